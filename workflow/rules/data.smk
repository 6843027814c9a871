rule make_holdout:
    input:
        stamps=stamps("holdout"),
    output:
        out("holdout"),
    log:
        log_file("make_holdout", "seed{seed}"),
    benchmark:
        benchmark_file("make_holdout", "seed{seed}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: spec_json(SETTINGS.holdout_spec(int(wc.seed))),
    shell:
        "fewshot make-holdout --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"
