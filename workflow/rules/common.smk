# Helpers every rule file uses. Paths and per-stage settings come from most.stages / most.config.
import sys
from pathlib import Path

from snakemake.utils import validate

# The checkout being run is the code that runs: the helpers imported here and every job's `most`.
REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO))

from most import config as most_config
from most import stages
from most.workflow_resources import export_job_environment, snakemake_resources

export_job_environment(REPO)

validate(config, schema="../schemas/config.schema.yaml")
most_config.validate(config, source="the workflow config")

RESULTS = f"results/{config['run']}"
MOST_ENV = "../../envs/most.yaml"


def stage_config(stage):
    """The resolved view of the config that `stage` reads (rule stage_config writes it)."""
    return f"{RESULTS}/config/{stage}.yaml"


def upstream_configs(stage):
    """The config views of every stage upstream of `stage`. An edited upstream view is newer than
    this stage's output, so a rerun after the upstream job failed still reaches this stage (Snakemake
    otherwise treats the failed job's removed output as a deleted intermediate, and says nothing to do)."""
    return [stage_config(upstream) for upstream in stages.upstream_stages(stage)]


def stage_view(wildcards):
    return most_config.view(config, wildcards.stage)


def stage_output(name):
    """Output `name` of the stage registry under this run's results (a folder as `directory`)."""
    path = f"{RESULTS}/{stages.OUTPUTS[name]}"
    return directory(path) if stages.is_folder(name) else path


def stage_log(stage):
    return f"{RESULTS}/logs/{stage}.log"


def stage_benchmark(stage):
    return f"{RESULTS}/benchmarks/{stage}.tsv"


def code_digest(stage):
    return stages.code_digest(stage)


def stage_threads(stage):
    """Snakemake's core accounting. Jobs get `--threads {resources.cpus_per_task}` instead: under
    `--cores all --profile slurm` Snakemake caps `{threads}` at the submit host's cores."""
    return config["resources"][stage]["cpus"]


def stage_resources(stage):
    return snakemake_resources(config["resources"][stage])


# The model chain (graft -> posttrain -> instruct) is the pipeline's longest path: among ready jobs it
# goes first, so a 1-CPU job beside it (the unit ceiling) never holds a core the 2-CPU training waits for.
MODEL_CHAIN_PRIORITY = 10

PRETRAIN_BASE = stages.builds_base_lm(config)
