from most.dvc_pipeline import up_to_date_in_summary

COLUMNS = "output_file\tdate\trule\tlog-file(s)\tinput-file(s)\tshellcmd\tstatus\tplan"


def summary(*rows: tuple[str, str, str]) -> str:
    """A `snakemake --detailed-summary` table with the given (output, rule, plan) rows."""
    lines = [f"{output}\t-\t{rule}\t-\t-\t-\tok\t{plan}" for output, rule, plan in rows]
    return "\n".join([COLUMNS, *lines]) + "\n"


def test_a_stage_counts_as_up_to_date_only_when_every_output_plans_no_update():
    table = summary(
        ("results/x/graft", "graft", "no update"),
        ("results/x/posttrain", "posttrain", "no update"),
        ("results/x/posttrain/model", "posttrain", "update pending"),  # one stale output is enough to leave it out
        ("results/x/prepare", "prepare", "no update"),
        ("results/x/config/graft.yaml", "stage_config", "no update"),  # not a pipeline stage
        ("results/x/units/tokens", "tokenize", "update pending"),
    )
    assert up_to_date_in_summary(table) == ["prepare", "graft"]  # pipeline order, not the table's


def test_an_empty_summary_has_no_stage_up_to_date():
    assert up_to_date_in_summary(summary()) == []
