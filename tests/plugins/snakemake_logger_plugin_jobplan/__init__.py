"""A Snakemake logger plugin for the tests: every job Snakemake plans or starts, as one JSON line.

Snakemake hands each job's rule, resources, threads and shell command to logger plugins as a
structured record (`LogEvent.JOB_INFO`), so the tests read a plan's cluster requests from that
public interface rather than from the dry run's printout. Enable it with
`PYTHONPATH=tests/plugins snakemake --logger jobplan --logger-jobplan-path plan.jsonl ...`.
"""

import json
from dataclasses import dataclass, field
from logging import LogRecord
from typing import Optional

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    # Optional[...], not `str | None`: the plugin registry reads the argparse type from this annotation
    path: Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "JSON-lines file the jobs are appended to", "required": True}
    )


class LogHandler(LogHandlerBase):
    def emit(self, record: LogRecord) -> None:
        if getattr(record, "event", None) != LogEvent.JOB_INFO:
            return
        job = {
            "rule": record.rule_name,
            "threads": record.threads,
            "resources": {name: value for name, value in record.resources.items() if not name.startswith("_")},
            "shell": record.shellcmd,
        }
        with open(self.settings.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(job, default=str) + "\n")

    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False  # Snakemake would list it as the run's log file

    @property
    def has_filter(self) -> bool:
        return True  # every job, whatever --quiet says

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
