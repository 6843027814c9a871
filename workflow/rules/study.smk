# The ranking study (study.archs > 0): ground truth for a seeded set of architectures, their accuracy
# with each tree's leaves and with two one-shot baselines, their training-free rankings, and the
# ranking measures of each; every accuracy on the test part. With study.protocol transfer, each
# seed's pretrained one-shot supernet is where leaves and baselines start (pretrain_oneshot).


rule pretrain_oneshot:
    input:
        holdout=out("holdout"),
        stamps=stamps("pretrained"),
    output:
        out("pretrained"),
    log:
        log_file("pretrain_oneshot", "seed{seed}"),
    benchmark:
        benchmark_file("pretrain_oneshot", "seed{seed}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.pretrain_spec(int(wc.seed))),
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot pretrain-oneshot --spec {params.spec:q} --holdout {input.holdout:q}"
        " --checkpoints {params.checkpoints:q} --out {output:q} > {log:q} 2>&1"


rule sample_study_set:
    input:
        stamps=stamps("study_set"),
    output:
        out("study_set"),
    log:
        log_file("sample_study_set", "run"),
    benchmark:
        benchmark_file("sample_study_set", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.study_set_spec()),
    shell:
        "fewshot sample-study-set --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


rule train_standalone:
    input:
        study_set=out("study_set"),
        holdout=out("holdout", seed=SETTINGS.study.seed),
        stamps=stamps("standalone"),
    output:
        out("standalone"),
    log:
        log_file("train_standalone", "gt{gt}_chunk{chunk}"),
    benchmark:
        benchmark_file("train_standalone", "gt{gt}_chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.standalone_spec(int(wc.gt), int(wc.chunk))),
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-standalone --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --checkpoints {params.checkpoints:q}"
        " --out {output:q} > {log:q} 2>&1"


rule read_benchmark:
    input:
        study_set=out("study_set"),
        stamps=stamps("benchmark"),
    output:
        out("benchmark"),
    log:
        log_file("read_benchmark", "run"),
    benchmark:
        benchmark_file("read_benchmark", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=spec_json(SETTINGS.benchmark_spec()),
    shell:
        "fewshot read-benchmark --spec {params.spec:q} --study-set {input.study_set:q} --out {output:q} > {log:q} 2>&1"


rule train_oneshot:
    input:
        unpack(get_start),
        holdout=out("holdout"),
        stamps=stamps("oneshot"),
    output:
        out("oneshot"),
    log:
        log_file("train_oneshot", "seed{seed}_{budget}"),
    benchmark:
        benchmark_file("train_oneshot", "seed{seed}_{budget}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["leaves"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.oneshot_spec(int(wc.seed), int(wc.budget))),
        checkpoints=CHECKPOINTS,
        start=start_option,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-oneshot --spec {params.spec:q} --holdout {input.holdout:q}"
        " {params.start} --checkpoints {params.checkpoints:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_study:
    input:
        study_set=out("study_set"),
        holdout=out("holdout"),
        splits=get_tree_splits,
        leaf_weights=get_tree_leaf_weights,
        stamps=stamps("study"),
    output:
        out("study"),
    log:
        log_file("evaluate_study", "{metric}/seed{seed}_chunk{chunk}"),
    benchmark:
        benchmark_file("evaluate_study", "{metric}/seed{seed}_chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.study_eval_spec(wc.metric, int(wc.seed), int(wc.chunk))
        ),
    shell:
        "OMP_NUM_THREADS={threads} fewshot evaluate-study --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --splits {input.splits:q} --leaf-weights {input.leaf_weights:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_oneshot:
    input:
        study_set=out("study_set"),
        holdout=out("holdout"),
        oneshot=out("oneshot"),
        stamps=stamps("oneshot_study"),
    output:
        out("oneshot_study"),
    log:
        log_file("evaluate_oneshot", "seed{seed}_{budget}_chunk{chunk}"),
    benchmark:
        benchmark_file("evaluate_oneshot", "seed{seed}_{budget}_chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.oneshot_eval_spec(int(wc.seed), int(wc.budget), int(wc.chunk))
        ),
    shell:
        "OMP_NUM_THREADS={threads} fewshot evaluate-oneshot --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --oneshot {input.oneshot:q} --out {output:q} > {log:q} 2>&1"


rule score_study:
    input:
        study_set=out("study_set"),
        holdout=out("holdout", seed=SETTINGS.study.seed),
        stamps=stamps("zero_cost"),
    output:
        out("zero_cost"),
    log:
        log_file("score_study", "{proxy}_chunk{chunk}"),
    benchmark:
        benchmark_file("score_study", "{proxy}_chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
    params:
        spec=lambda wc: spec_json(SETTINGS.zero_cost_spec(wc.proxy, int(wc.chunk))),
    shell:
        "OMP_NUM_THREADS={threads} fewshot score-study --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --out {output:q} > {log:q} 2>&1"


rule rank_study:
    input:
        truth=all_of("benchmark") or all_of("standalone"),
        studies=all_of("study"),
        oneshots=all_of("oneshot_study"),
        zero_cost=all_of("zero_cost"),
        stamps=stamps("ranking", "study_summary"),
    output:
        ranking=out("ranking"),
        summary=out("study_summary"),
    log:
        log_file("rank_study", "run"),
    benchmark:
        benchmark_file("rank_study", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.ranking_spec()),
    shell:
        "fewshot rank-study --spec {params.spec:q} --truth {input.truth:q} --studies {input.studies:q}"
        " --oneshots {input.oneshots:q} --zero-cost {input.zero_cost:q} --out {output.ranking:q}"
        " --out-summary {output.summary:q} > {log:q} 2>&1"


rule draw_ranking:
    input:
        ranking=out("ranking"),
        summary=out("study_summary"),
    output:
        png=[
            report(png, caption=caption, category=category)
            for png, caption, category in figure_pngs("draw_ranking")
        ],
        extras=figure_extras("draw_ranking"),
    log:
        log_file("draw_ranking", "run"),
    benchmark:
        benchmark_file("draw_ranking", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.ranking_figure_spec()),
    shell:
        "fewshot draw-ranking --spec {params.spec:q} --ranking {input.ranking:q} --summary {input.summary:q}"
        " --out {output.png:q} > {log:q} 2>&1"
