# Evaluation of the instruction-tuned model: eval_asr · eval_tts · eval_audio_lm · eval_spoken_qa -> report.
# `snakemake ablations`: MAMoE vs its variants, trained at equal compute over several seeds.


rule eval_asr:
    input:
        config=stage_config("eval_asr"),
        upstream=upstream_configs("eval_asr"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        kmeans=rules.fit_units.output[0],
        instruct=rules.instruct.output[0],
    output:
        stage_output("eval_asr"),
    log:
        stage_log("eval_asr"),
    benchmark:
        stage_benchmark("eval_asr")
    conda:
        MOST_ENV
    threads: stage_threads("eval_asr")
    resources:
        **stage_resources("eval_asr"),
    params:
        code=code_digest("eval_asr"),
    shell:
        "most eval_asr --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --kmeans {input.kmeans:q}"
        " --instruct {input.instruct:q} --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule eval_tts:
    input:
        config=stage_config("eval_tts"),
        upstream=upstream_configs("eval_tts"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        kmeans=rules.fit_units.output[0],
        vocoder=rules.train_vocoder.output[0],
        instruct=rules.instruct.output[0],
    output:
        stage_output("eval_tts"),
    log:
        stage_log("eval_tts"),
    benchmark:
        stage_benchmark("eval_tts")
    conda:
        MOST_ENV
    threads: stage_threads("eval_tts")
    resources:
        **stage_resources("eval_tts"),
    params:
        code=code_digest("eval_tts"),
    shell:
        "most eval_tts --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --kmeans {input.kmeans:q}"
        " --vocoder {input.vocoder:q} --instruct {input.instruct:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule eval_audio_lm:
    input:
        config=stage_config("eval_audio_lm"),
        upstream=upstream_configs("eval_audio_lm"),
        tokens=rules.tokenize.output[0],
        instruct=rules.instruct.output[0],
    output:
        stage_output("eval_audio_lm"),
    log:
        stage_log("eval_audio_lm"),
    benchmark:
        stage_benchmark("eval_audio_lm")
    conda:
        MOST_ENV
    threads: stage_threads("eval_audio_lm")
    resources:
        **stage_resources("eval_audio_lm"),
    params:
        code=code_digest("eval_audio_lm"),
    shell:
        "most eval_audio_lm --config {input.config:q} --tokens {input.tokens:q} --instruct {input.instruct:q} --output {output:q}"
        " --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule eval_spoken_qa:
    input:
        config=stage_config("eval_spoken_qa"),
        upstream=upstream_configs("eval_spoken_qa"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        kmeans=rules.fit_units.output[0],
        vocoder=rules.train_vocoder.output[0],
        instruct=rules.instruct.output[0],
    output:
        stage_output("eval_spoken_qa"),
    log:
        stage_log("eval_spoken_qa"),
    benchmark:
        stage_benchmark("eval_spoken_qa")
    conda:
        MOST_ENV
    threads: stage_threads("eval_spoken_qa")
    resources:
        **stage_resources("eval_spoken_qa"),
    params:
        code=code_digest("eval_spoken_qa"),
    shell:
        "most eval_spoken_qa --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --kmeans {input.kmeans:q}"
        " --vocoder {input.vocoder:q} --instruct {input.instruct:q} --output {output:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule report:
    input:
        config=stage_config("report"),
        upstream=upstream_configs("report"),
        ceiling=rules.unit_ceiling.output.ceiling,
        posttrain=rules.posttrain.output[0],
        instruct=rules.instruct.output[0],
        eval_asr=rules.eval_asr.output[0],
        eval_tts=rules.eval_tts.output[0],
        eval_audio_lm=rules.eval_audio_lm.output[0],
        eval_spoken_qa=rules.eval_spoken_qa.output[0],
    output:
        report=report(stage_output("report"), category="Report", caption="../report/report.rst"),
        json=stage_output("report_json"),
        plots=report(stage_output("report_plots"), patterns=["{name}.png"], category="Plots", caption="../report/plots.rst"),
    log:
        stage_log("report"),
    benchmark:
        stage_benchmark("report")
    conda:
        MOST_ENV
    threads: stage_threads("report")
    resources:
        **stage_resources("report"),
    params:
        code=code_digest("report"),
    shell:
        "most report --config {input.config:q} --ceiling {input.ceiling:q} --posttrain {input.posttrain:q} --instruct {input.instruct:q}"
        " --eval-asr {input.eval_asr:q} --eval-tts {input.eval_tts:q} --eval-audio-lm {input.eval_audio_lm:q}"
        " --eval-spoken-qa {input.eval_spoken_qa:q} --output {output.report:q} --report-json {output.json:q}"
        " --report-plots {output.plots:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"


rule ablations:
    input:
        config=stage_config("ablations"),
        upstream=upstream_configs("ablations"),
        prepare=rules.prepare.output[0],
        tokens=rules.tokenize.output[0],
        features=rules.encode_features.output[0],
        kmeans=rules.fit_units.output[0],
        graft=rules.graft.output[0],
    output:
        json=stage_output("ablations"),
        table=report(stage_output("ablations_md"), category="Ablations", caption="../report/ablations.rst"),
    log:
        stage_log("ablations"),
    benchmark:
        stage_benchmark("ablations")
    conda:
        MOST_ENV
    threads: stage_threads("ablations")
    resources:
        **stage_resources("ablations"),
    params:
        code=code_digest("ablations"),
    shell:
        "most launch --gpus-per-node {resources.launch_gpus} --nodes {resources.launch_nodes} --accelerate-config {resources.launch_accelerate:q}"
        " -- ablations --config {input.config:q} --prepare {input.prepare:q} --tokens {input.tokens:q} --features {input.features:q} --kmeans {input.kmeans:q}"
        " --graft {input.graft:q} --output {output.json:q} --ablations-md {output.table:q} --threads {resources.cpus_per_task} --log {log:q} > {log:q} 2>&1"
