# Training: posttrain (stage 1) -> instruct (stage 2). Checkpoints: results/<run>/checkpoints/ (kept on failure).


rule posttrain:
    input:
        config=stage_config("posttrain"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        graft=rules.graft.output[0],
    output:
        directory(f"{RESULTS}/posttrain"),
    params:
        code=code_digest("posttrain"),
    threads: stage_threads("posttrain")
    resources:
        **stage_resources("posttrain"),
    log:
        stage_log("posttrain"),
    benchmark:
        stage_benchmark("posttrain")
    conda:
        MOST_ENV
    shell:
        "most posttrain --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --graft {input.graft:q}"
        " --output {output:q} --threads {threads} --log {log:q} > {log:q} 2>&1"


rule instruct:
    input:
        config=stage_config("instruct"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        posttrain=rules.posttrain.output[0],
    output:
        directory(f"{RESULTS}/instruct"),
    params:
        code=code_digest("instruct"),
    threads: stage_threads("instruct")
    resources:
        **stage_resources("instruct"),
    log:
        stage_log("instruct"),
    benchmark:
        stage_benchmark("instruct")
    conda:
        MOST_ENV
    shell:
        "most instruct --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --posttrain {input.posttrain:q}"
        " --output {output:q} --threads {threads} --log {log:q} > {log:q} 2>&1"
