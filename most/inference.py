"""`most asr`, `most tts`, `most ask`: one model checkpoint used by hand, with the run's units and vocoder.

Defaults come from the config (`--config`, default config/config.yaml): the model is the run's
instruction-tuned checkpoint (`results/<run>/instruct`), the unit tokenizer `results/<run>/units/kmeans`,
the vocoder `results/<run>/units/vocoder`, prompts `tasks.templates`, unit sampling `evaluate.tts_*`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class Assistant:
    """The pieces the three commands share, loaded on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        from most import config, stages
        from most.evaluate.generate import Checkpoint

        self.cfg = config.load(args.config)
        run = self.cfg["run"]
        self.kmeans = Path(args.kmeans or stages.output_path(run, "kmeans"))
        self.vocoder = Path(args.vocoder or stages.output_path(run, "vocoder"))
        self.checkpoint = Checkpoint.load(
            Path(args.model or stages.output_path(run, "instruct")), self.cfg["tasks"]["templates"], args.threads
        )

    def speech_of(self, wav: Path) -> dict:
        """A row with the speech of a wav file (any rate; mono mixdown, resampled to 16 kHz): its
        encoder frames (continuous input) and units, computed as for the training corpus."""
        from most.data import audio
        from most.speech.units import UnitTokenizer

        if not self.kmeans.exists():
            raise FileNotFoundError(f"no unit tokenizer at {self.kmeans}: run the pipeline, or pass --kmeans")
        tokenizer = UnitTokenizer.load(self.kmeans)
        [frames] = tokenizer.features.unnormalized([audio.read_mono(wav, 16000)], [str(wav)])
        units, durations = tokenizer.units_of(frames)
        return {"id": str(wav), "units": units, "durations": durations, "speech_frames": frames}

    def speak(self, text: str, path: Path) -> int:
        """The model speaks `text` through the run's vocoder into `path`; returns the unit count. The
        text is normalised as `prepare` normalised the training texts (case, punctuation), so the model
        is given words as it learned them."""
        import soundfile

        from most.data.quality import normalize_text
        from most.evaluate.tts import model_units
        from most.speech.speaker import Speaker
        from most.speech.units import UnitTokenizer

        normalized = normalize_text(text, self.cfg["prepare"])
        if normalized.skip:
            detail = f" ({normalized.detail})" if normalized.detail else ""
            raise ValueError(f"cannot speak {text!r}: {normalized.skip}{detail}; the model speaks the training texts' alphabet")
        if normalized.text != text:
            log.info("speaking %r", normalized.text)
        [units] = model_units(self.checkpoint, [normalized.text], self.cfg["evaluate"], self.cfg["seed"])
        wave = Speaker(self.vocoder, UnitTokenizer.load(self.kmeans), self.cfg["voice"]).speak(units)
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave, 16000)
        return len(units)


def asr(args: argparse.Namespace) -> int:
    assistant = Assistant(args)
    for wav in args.files:
        transcript = assistant.checkpoint.generate_text("asr", [assistant.speech_of(Path(wav))], args.max_new_tokens)[0]
        print(f"{wav}\t{transcript}" if len(args.files) > 1 else transcript)
    return 0


def tts(args: argparse.Namespace) -> int:
    units = Assistant(args).speak(args.text, Path(args.output))
    log.info("wrote %s (%d units)", args.output, units)
    return 0


def ask(args: argparse.Namespace) -> int:
    assistant = Assistant(args)
    answer = assistant.checkpoint.generate_text("spoken_qa", [assistant.speech_of(Path(args.file))], args.max_new_tokens)[0]
    print(answer)
    if args.speak:
        if not answer:
            raise RuntimeError("the model's answer is empty: nothing to speak")
        assistant.speak(answer, Path(args.speak))
        log.info("wrote the spoken answer to %s", args.speak)
    return 0


def add_commands(commands) -> None:
    def common(parser):
        parser.add_argument(
            "--config", default="config/config.yaml", help="config whose run, templates and voice apply (default: %(default)s)"
        )
        parser.add_argument("--model", help="checkpoint folder (a stage output or its model/; default: results/<run>/instruct)")
        parser.add_argument("--kmeans", help="unit tokenizer folder (default: results/<run>/units/kmeans)")
        parser.add_argument("--vocoder", help="vocoder folder (default: results/<run>/units/vocoder)")
        parser.add_argument("--threads", type=int, default=1, help="CPU threads")
        parser.add_argument("--max-new-tokens", type=int, default=60, help="text decoding limit")

    parser = commands.add_parser(
        "asr", help="transcribe wav files with a checkpoint", description="Print the model's transcript of each file."
    )
    parser.add_argument("files", nargs="+", metavar="FILE.wav")
    common(parser)
    parser.set_defaults(handler=asr)
    parser = commands.add_parser(
        "tts", help="speak a text with a checkpoint", description="The model's speech units for TEXT, vocoded to a wav."
    )
    parser.add_argument("text")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.wav")
    common(parser)
    parser.set_defaults(handler=tts)
    parser = commands.add_parser("ask", help="answer a spoken question", description="Print the model's answer to a spoken question.")
    parser.add_argument("file", metavar="FILE.wav")
    parser.add_argument("--speak", metavar="OUT.wav", help="also speak the answer into this wav")
    common(parser)
    parser.set_defaults(handler=ask)
