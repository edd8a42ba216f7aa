# Data: download (hub/local sources or the embedded synthesized corpus) -> prepare (manifests).


rule download:
    input:
        config=stage_config("download"),
    output:
        stage_output("download"),
    log:
        stage_log("download"),
    benchmark:
        stage_benchmark("download")
    conda:
        MOST_ENV
    threads: stage_threads("download")
    resources:
        **stage_resources("download"),
    params:
        code=code_digest("download"),
    shell:
        "most download --config {input.config:q} --output {output:q}" " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule prepare:
    input:
        config=stage_config("prepare"),
        upstream=upstream_configs("prepare"),
        download=rules.download.output[0],
    output:
        stage_output("prepare"),
    log:
        stage_log("prepare"),
    benchmark:
        stage_benchmark("prepare")
    conda:
        MOST_ENV
    threads: stage_threads("prepare")
    resources:
        **stage_resources("prepare"),
    params:
        code=code_digest("prepare"),
    shell:
        "most prepare --config {input.config:q} --download {input.download:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"
