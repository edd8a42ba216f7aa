# Speech units: encode_features (frames, once) -> fit_units (k-means) -> tokenize (unit sequences)
# -> train_vocoder -> unit_ceiling.


rule encode_features:
    input:
        config=stage_config("encode_features"),
        upstream=upstream_configs("encode_features"),
        prepare=rules.prepare.output[0],
    output:
        stage_output("features"),
    log:
        stage_log("encode_features"),
    benchmark:
        stage_benchmark("encode_features")
    conda:
        MOST_ENV
    threads: stage_threads("encode_features")
    resources:
        **stage_resources("encode_features"),
    params:
        code=code_digest("encode_features"),
    shell:
        "most encode_features --config {input.config:q} --prepare {input.prepare:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule fit_units:
    input:
        config=stage_config("fit_units"),
        upstream=upstream_configs("fit_units"),
        features=rules.encode_features.output[0],
    output:
        stage_output("kmeans"),
    log:
        stage_log("fit_units"),
    benchmark:
        stage_benchmark("fit_units")
    conda:
        MOST_ENV
    threads: stage_threads("fit_units")
    resources:
        **stage_resources("fit_units"),
    params:
        code=code_digest("fit_units"),
    shell:
        "most fit_units --config {input.config:q} --features {input.features:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule tokenize:
    input:
        config=stage_config("tokenize"),
        upstream=upstream_configs("tokenize"),
        prepare=rules.prepare.output[0],
        features=rules.encode_features.output[0],
        kmeans=rules.fit_units.output[0],
    output:
        stage_output("tokens"),
    log:
        stage_log("tokenize"),
    benchmark:
        stage_benchmark("tokenize")
    conda:
        MOST_ENV
    threads: stage_threads("tokenize")
    resources:
        **stage_resources("tokenize"),
    params:
        code=code_digest("tokenize"),
    shell:
        "most tokenize --config {input.config:q} --prepare {input.prepare:q} --features {input.features:q} --kmeans {input.kmeans:q}"
        " --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule train_vocoder:
    input:
        config=stage_config("train_vocoder"),
        upstream=upstream_configs("train_vocoder"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
    output:
        stage_output("vocoder"),
    log:
        stage_log("train_vocoder"),
    benchmark:
        stage_benchmark("train_vocoder")
    conda:
        MOST_ENV
    threads: stage_threads("train_vocoder")
    resources:
        **stage_resources("train_vocoder"),
    params:
        code=code_digest("train_vocoder"),
    shell:
        "most train_vocoder --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q}"
        " --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule unit_ceiling:
    input:
        config=stage_config("unit_ceiling"),
        upstream=upstream_configs("unit_ceiling"),
        prepare=rules.prepare.output[0],
        kmeans=rules.fit_units.output[0],
        vocoder=rules.train_vocoder.output[0],
    output:
        ceiling=stage_output("ceiling"),
        samples=stage_output("ceiling_samples"),
    log:
        stage_log("unit_ceiling"),
    benchmark:
        stage_benchmark("unit_ceiling")
    conda:
        MOST_ENV
    threads: stage_threads("unit_ceiling")
    resources:
        **stage_resources("unit_ceiling"),
    params:
        code=code_digest("unit_ceiling"),
    shell:
        "most unit_ceiling --config {input.config:q} --prepare {input.prepare:q} --kmeans {input.kmeans:q}"
        " --vocoder {input.vocoder:q} --output {output.ceiling:q} --ceiling-samples {output.samples:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"
