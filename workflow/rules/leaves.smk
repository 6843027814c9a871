# The leaves: from the pretrained one-shot supernet (or from scratch), trained on their masks, their
# architectures evaluated, then gathered.


rule train_leaves:
    input:
        unpack(get_start),
        holdout=out("holdout"),
        splits=get_tree_splits,
        stamps=stamps("leaves", "leaf_weights"),
    output:
        table=out("leaves"),
        weights=out("leaf_weights"),
    log:
        log_file("train_leaves", "{metric}/seed{seed}_chunk{chunk}"),
    benchmark:
        benchmark_file("train_leaves", "{metric}/seed{seed}_chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["leaves"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.leaves_spec(wc.metric, int(wc.seed), int(wc.chunk))
        ),
        checkpoints=CHECKPOINTS,
        start=start_option,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-leaves --spec {params.spec:q} --holdout {input.holdout:q}"
        " --splits {input.splits:q} {params.start} --checkpoints {params.checkpoints:q}"
        " --out-table {output.table:q} --out-weights {output.weights:q} > {log:q} 2>&1"


rule collect_leaves:
    input:
        tables=all_of("leaves"),
        stamps=stamps("leaves_table"),
    output:
        out("leaves_table"),
    log:
        log_file("collect_leaves", "run"),
    benchmark:
        benchmark_file("collect_leaves", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.collect_spec()),
    shell:
        "fewshot collect-leaves --spec {params.spec:q} --tables {input.tables:q} --out {output:q} > {log:q} 2>&1"
