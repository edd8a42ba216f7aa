# MLflow: one parent run per invocation (main process only; SLURM jobs get --no-hooks), closed
# with the right status. After success, DVC records what Snakemake made (most.dvc_pipeline).
from most import dvc_pipeline, tracking
from snakemake import __version__ as SNAKEMAKE_VERSION


onstart:
    tracking.start_pipeline(config, SNAKEMAKE_VERSION)


onsuccess:
    dvc_pipeline.commit_after_snakemake(config)
    tracking.end_pipeline(success=True, log_paths=log)


onerror:
    tracking.end_pipeline(success=False, log_paths=log)
