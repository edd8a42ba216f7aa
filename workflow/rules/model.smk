# Model: pretrain_base (embedded default only) -> graft (MAMoE model + unit tokens + graft report).


rule pretrain_base:
    input:
        config=stage_config("pretrain_base"),
        upstream=upstream_configs("pretrain_base"),
        prepare=rules.prepare.output[0],
    output:
        stage_output("base_lm"),
    log:
        stage_log("pretrain_base"),
    benchmark:
        stage_benchmark("pretrain_base")
    conda:
        MOST_ENV
    threads: stage_threads("pretrain_base")
    resources:
        **stage_resources("pretrain_base"),
    params:
        code=code_digest("pretrain_base"),
    shell:
        "most pretrain_base --config {input.config:q} --prepare {input.prepare:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule graft:
    input:
        config=stage_config("graft"),
        upstream=upstream_configs("graft"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        kmeans=rules.fit_units.output[0],
        base_lm=rules.pretrain_base.output[0] if PRETRAIN_BASE else [],
    output:
        stage_output("graft"),
    log:
        stage_log("graft"),
    benchmark:
        stage_benchmark("graft")
    priority: MODEL_CHAIN_PRIORITY
    conda:
        MOST_ENV
    threads: stage_threads("graft")
    resources:
        **stage_resources("graft"),
    params:
        code=code_digest("graft"),
        base_lm=lambda wildcards, input: ["--base-lm", input.base_lm] if input.base_lm else [],
    shell:
        "most graft --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --kmeans {input.kmeans:q} {params.base_lm:q}"
        " --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"
