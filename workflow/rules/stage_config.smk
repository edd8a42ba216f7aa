# One small file per stage holding the config sections it reads: editing a section reruns exactly
# the stages that read it (params trigger here, then a changed input downstream).


rule stage_config:
    output:
        f"{RESULTS}/config/{{stage}}.yaml",
    log:
        f"{RESULTS}/logs/stage_config/{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stage_config/{{stage}}.tsv"
    wildcard_constraints:
        stage="|".join(stages.STAGES),
    localrule: True
    params:
        view=stage_view,
    run:
        most_config.write_view(params.view, output[0])
