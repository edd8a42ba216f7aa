# Training: posttrain (stage 1) -> instruct (stage 2). Checkpoints: results/<run>/checkpoints/ (kept on failure).
# `most launch` runs the stage under `accelerate launch` with the GPUs and nodes of its resources.


rule posttrain:
    input:
        config=stage_config("posttrain"),
        upstream=upstream_configs("posttrain"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        graft=rules.graft.output[0],
    output:
        stage_output("posttrain"),
    log:
        stage_log("posttrain"),
    benchmark:
        stage_benchmark("posttrain")
    priority: MODEL_CHAIN_PRIORITY
    conda:
        MOST_ENV
    threads: stage_threads("posttrain")
    resources:
        **stage_resources("posttrain"),
    params:
        code=code_digest("posttrain"),
    shell:
        "most launch --gpus-per-node {resources.launch_gpus} --nodes {resources.launch_nodes} --accelerate-config {resources.launch_accelerate:q}"
        " -- posttrain --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --graft {input.graft:q}"
        " --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule instruct:
    input:
        config=stage_config("instruct"),
        upstream=upstream_configs("instruct"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        posttrain=rules.posttrain.output[0],
    output:
        stage_output("instruct"),
    log:
        stage_log("instruct"),
    benchmark:
        stage_benchmark("instruct")
    priority: MODEL_CHAIN_PRIORITY
    conda:
        MOST_ENV
    threads: stage_threads("instruct")
    resources:
        **stage_resources("instruct"),
    params:
        code=code_digest("instruct"),
    shell:
        "most launch --gpus-per-node {resources.launch_gpus} --nodes {resources.launch_nodes} --accelerate-config {resources.launch_accelerate:q}"
        " -- instruct --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --posttrain {input.posttrain:q}"
        " --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"
