"""Vocoders: deduplicated units -> 16 kHz waveform.

- `UnitMelVocoder` (embedded default, trained by `train_vocoder`): units -> convolutional encoder
  (context disambiguates each unit) -> duration predictor -> length regulator -> F0 predictor ->
  decoder conditioned on speaker and F0 -> log-mel at 100 Hz -> Griffin-Lim (torchaudio).
  F0 matters: without it the decoder averages over every pitch seen for a unit, the harmonics blur,
  and Griffin-Lim turns the blur into noise (measured: 78% -> 64% judge WER with the true F0 given).
- `CentroidVocoder`: the untrained baseline, each unit frame replaced by its k-means centroid.
- `UnitHifiGan` (paper config): a unit HiFi-GAN generator with a duration predictor, weights from
  safetensors.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
F0_BINS = 64  # 0 = unvoiced, 1..63 log-spaced between F0_MIN and F0_MAX
F0_MIN, F0_MAX = 60.0, 400.0
WEIGHTS = "vocoder.safetensors"
CONFIG = "vocoder.json"


# --------------------------------------------------------------------------------------------
# Acoustic analysis shared by training and synthesis


@dataclass(frozen=True)
class MelSettings:
    n_fft: int = 1024
    hop: int = 160  # 10 ms
    n_mels: int = 80

    @cached_property
    def _mel(self):
        import torchaudio

        return torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=self.n_fft, hop_length=self.hop, n_mels=self.n_mels, f_max=SAMPLE_RATE / 2, power=1.0
        )

    @cached_property
    def _inverse(self):
        import torchaudio

        return torchaudio.transforms.InverseMelScale(
            n_stft=self.n_fft // 2 + 1, n_mels=self.n_mels, sample_rate=SAMPLE_RATE, f_max=SAMPLE_RATE / 2
        )

    def log_mel(self, wave: np.ndarray) -> torch.Tensor:
        """[frames, n_mels] natural-log magnitude mel."""
        with torch.no_grad():
            return torch.log(self._mel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))) + 1e-5).T

    def griffin_lim(self, log_mel: torch.Tensor, iterations: int, seed: int = 0) -> np.ndarray:
        import torchaudio

        shortest = self.n_fft // self.hop + 1  # the STFT's reflection padding needs more frames than n_fft / 2 samples
        if log_mel.shape[0] < shortest:  # a very short utterance (one unit): padded with silence
            log_mel = torch.cat([log_mel, torch.full((shortest - log_mel.shape[0], log_mel.shape[1]), math.log(1e-5))])
        with torch.no_grad():
            magnitude = self._inverse(torch.exp(log_mel).T.float())
            torch.manual_seed(seed)  # Griffin-Lim starts from random phases
            transform = torchaudio.transforms.GriffinLim(
                n_fft=self.n_fft, hop_length=self.hop, n_iter=iterations, power=1.0, rand_init=True
            )
            wave = transform(magnitude)
        peak = float(wave.abs().max())
        return (wave / peak * 0.9 if peak > 0 else wave).numpy()


def f0_bins(wave: np.ndarray, hop: int = 160, window: int = 512, voicing: float = 0.5) -> torch.Tensor:
    """Quantized F0 per `hop` frame from normalized autocorrelation (0 where unvoiced)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    x = torch.nn.functional.pad(x, (window // 2, window // 2))
    if len(x) < window:
        return torch.zeros(0, dtype=torch.long)
    frames = x.unfold(0, window, hop)
    frames = frames - frames.mean(1, keepdim=True)
    spectrum = torch.fft.rfft(frames, 2 * window)
    autocorrelation = torch.fft.irfft(spectrum.abs() ** 2)[:, :window]
    low, high = int(SAMPLE_RATE / F0_MAX), int(SAMPLE_RATE / F0_MIN)
    ratio = autocorrelation[:, low : high + 1] / (autocorrelation[:, :1] + 1e-8)
    peak, lag = ratio.max(1)
    f0 = SAMPLE_RATE / (lag + low).float()
    scaled = (torch.log(f0) - np.log(F0_MIN)) / (np.log(F0_MAX) - np.log(F0_MIN))
    bins = (scaled * (F0_BINS - 2)).round().clamp(0, F0_BINS - 2).long() + 1
    return torch.where(peak > voicing, bins, torch.zeros_like(bins))


# --------------------------------------------------------------------------------------------
# The trained unit-to-mel vocoder


@dataclass
class UnitMelConfig:
    kind: str = "unit_mel"
    k: int = 256
    speakers: list[str] = field(default_factory=list)
    hidden_size: int = 128
    encoder_layers: int = 4
    decoder_layers: int = 6
    frames_per_unit: int = 4  # mel frames (10 ms) per unit frame (40 ms at 25 Hz)
    n_mels: int = 80
    n_fft: int = 1024
    hop: int = 160
    max_position: int = 64  # frames within one unit run that get their own position embedding
    mel_mean: list[float] = field(default_factory=list)  # target normalisation, from the training set
    mel_std: list[float] = field(default_factory=list)
    speaker_f0: list[int] = field(default_factory=list)  # each speaker's median voiced F0 bin


class _ConvStack(nn.Module):
    """Residual convolutions over time; each output frame normalized on its own (LayerNorm), so that
    padding and sequence length never change a frame's statistics."""

    def __init__(self, hidden: int, layers: int, dilations: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 5, padding=2 * dilations[i % len(dilations)], dilation=dilations[i % len(dilations)])
            for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [batch, time, hidden], mask [batch, time]."""
        h = x * mask[..., None]
        for conv, norm in zip(self.convs, self.norms):
            h = (h + torch.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2)))) * mask[..., None]
        return h


class UnitMelVocoder(nn.Module):
    def __init__(self, config: UnitMelConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.unit_embedding = nn.Embedding(config.k + 1, hidden, padding_idx=config.k)
        self.speaker_embedding = nn.Embedding(max(len(config.speakers), 1), hidden)
        self.encoder = _ConvStack(hidden, config.encoder_layers)
        self.duration = nn.Linear(hidden, 1)  # log run length, in unit frames
        self.position = nn.Embedding(config.max_position, hidden)
        self.f0_predictor = _ConvStack(hidden, 2)
        self.f0_head = nn.Linear(hidden, F0_BINS)
        self.f0_embedding = nn.Embedding(F0_BINS, hidden)
        self.decoder = _ConvStack(hidden, config.decoder_layers, dilations=(1, 2, 4))
        self.mel_head = nn.Linear(hidden, config.n_mels)

    # pieces used by training and synthesis alike
    def encode(self, units: torch.Tensor, unit_mask: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.unit_embedding(units) + self.speaker_embedding(speakers)[:, None], unit_mask)

    def regulate(
        self, encoded: torch.Tensor, index: torch.Tensor, position: torch.Tensor, frame_mask: torch.Tensor, speakers: torch.Tensor
    ) -> torch.Tensor:
        gathered = torch.gather(encoded, 1, index[..., None].expand(-1, -1, encoded.shape[-1]))
        return gathered + self.position(position.clamp(max=self.config.max_position - 1)) + self.speaker_embedding(speakers)[:, None]

    def f0_logits(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.f0_head(self.f0_predictor(frames, frame_mask))

    def decode(self, frames: torch.Tensor, f0: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Normalized log-mel [batch, frames, n_mels]."""
        return self.mel_head(self.decoder(frames + self.f0_embedding(f0), frame_mask))

    def speaker_index(self, speaker: str) -> int:
        if speaker not in self.config.speakers:
            raise ValueError(f"vocoder.speaker: {speaker!r} is not a training speaker (choose one of {self.config.speakers})")
        return self.config.speakers.index(speaker)

    @torch.no_grad()
    def synthesize_mel(self, units: list[int], speaker: str, durations: list[int] | None = None, f0: str = "predicted") -> torch.Tensor:
        """Log-mel [frames, n_mels] for one deduplicated unit sequence (durations predicted if not given);
        F0 on the predicted voiced frames: the speaker's `median`, or the `predicted` contour."""
        if not units:
            return torch.zeros(0, self.config.n_mels)
        self.eval()
        speakers = torch.tensor([self.speaker_index(speaker)])
        unit_tensor = torch.tensor([units])
        encoded = self.encode(unit_tensor, torch.ones(1, len(units)), speakers)
        if durations is None:
            durations = torch.exp(self.duration(encoded)[0, :, 0]).round().clamp(min=1).long().tolist()
        index, position = run_positions([d * self.config.frames_per_unit for d in durations])
        frame_mask = torch.ones(1, len(index))
        frames = self.regulate(encoded, index[None], position[None], frame_mask, speakers)
        # voicing is always predicted; the pitch of a voiced frame is the F0 predictor's (the decoder
        # trains on true F0, which the predictor learns) or the speaker's median (a monotone)
        probabilities = self.f0_logits(frames, frame_mask).softmax(-1)
        voiced = probabilities[..., 0] < 0.5
        if f0 == "predicted":  # the most likely voiced bin of each voiced frame
            pitch = probabilities[..., 1:].argmax(-1) + 1
        elif f0 == "median":
            pitch = torch.full_like(voiced, self.config.speaker_f0[int(speakers[0])], dtype=torch.long)
        else:
            raise ValueError(f"voice.f0: {f0!r} is not median or predicted")
        mel = self.decode(frames, torch.where(voiced, pitch, 0), frame_mask)[0]
        return mel * torch.tensor(self.config.mel_std) + torch.tensor(self.config.mel_mean)


def run_positions(frame_counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output frame: the index of its unit and its position within the unit's run."""
    counts = torch.tensor(frame_counts, dtype=torch.long)
    index = torch.repeat_interleave(torch.arange(len(frame_counts)), counts)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(int(counts.sum())) - torch.repeat_interleave(starts, counts)
    return index, position


# --------------------------------------------------------------------------------------------
# The untrained baseline: centroid look-up


class CentroidVocoder:
    """Each unit frame becomes its k-means centroid, de-normalized to a log-mel, then Griffin-Lim.

    Only for log-mel unit features; it shows what the units carry without any learning.
    """

    def __init__(self, tokenizer, mel: MelSettings) -> None:
        settings = tokenizer.settings
        transform = tokenizer.features._transform if settings["features"] == "logmel" else None
        if transform is None or transform.n_fft != mel.n_fft or settings["n_mels"] != mel.n_mels:
            raise ValueError("the centroid baseline needs log-mel unit features on the vocoder's filterbank (same n_fft and n_mels)")
        self.tokenizer, self.mel = tokenizer, mel
        self.repeat = round(SAMPLE_RATE / settings["frame_rate_hz"]) // mel.hop

    def synthesize_mel(self, units: list[int], durations: list[int]) -> torch.Tensor:
        frames = self.tokenizer.centroids[torch.tensor([u for u, d in zip(units, durations) for _ in range(d)], dtype=torch.long)]
        if self.tokenizer.settings["normalize"] != "none":
            frames = frames * self.tokenizer.std + self.tokenizer.mean  # back to log power mel
        # the unit features are log power over their own filterbank; the vocoder mel is log magnitude
        return (frames / 2).repeat_interleave(self.repeat, 0)


# --------------------------------------------------------------------------------------------
# Paper config: unit HiFi-GAN (architecture here, weights from safetensors)


@dataclass
class HifiGanConfig:
    kind: str = "hifigan"
    k: int = 500
    embedding_dim: int = 128
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 4, 2])  # product = samples per unit frame (640 at 25 Hz)
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 8, 8, 4])
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    duration_hidden: int = 128


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations)
        self.plain = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(nn.functional.leaky_relu(dilated(nn.functional.leaky_relu(x, 0.1)), 0.1))
        return x


class UnitHifiGan(nn.Module):
    """Unit embedding -> transposed-convolution upsampling with multi-receptive-field blocks."""

    def __init__(self, config: HifiGanConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.k, config.embedding_dim)
        self.duration = nn.Sequential(
            nn.Conv1d(config.embedding_dim, config.duration_hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(config.duration_hidden, 1, 1)
        )
        channels = config.upsample_initial_channel
        self.pre = nn.Conv1d(config.embedding_dim, channels, 7, padding=3)
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
            self.ups.append(
                nn.ConvTranspose1d(
                    channels, channels // 2, kernel, rate, padding=(kernel - rate + 1) // 2, output_padding=(kernel - rate) % 2
                )
            )
            channels //= 2
            self.blocks.append(
                nn.ModuleList(_ResBlock(channels, k, d) for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilations))
            )
        self.post = nn.Conv1d(channels, 1, 7, padding=3)

    @property
    def samples_per_frame(self) -> int:
        return int(np.prod(self.config.upsample_rates))

    @torch.no_grad()
    def synthesize(self, units: list[int], durations: list[int] | None = None) -> np.ndarray:
        self.eval()
        embedded = self.embedding(torch.tensor([units])).transpose(1, 2)
        if durations is None:
            durations = torch.exp(self.duration(embedded)[0, 0]).round().clamp(min=1).long().tolist()
        x = embedded.repeat_interleave(torch.tensor(durations), dim=2)
        x = self.pre(x)
        for up, blocks in zip(self.ups, self.blocks):
            x = up(nn.functional.leaky_relu(x, 0.1))
            x = sum(block(x) for block in blocks) / len(blocks)
        wave = torch.tanh(self.post(nn.functional.leaky_relu(x)))[0, 0]
        return wave[: sum(durations) * self.samples_per_frame].numpy()


# --------------------------------------------------------------------------------------------
# Saving and loading (safetensors + JSON config; never pickle)


def save(model: nn.Module, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(asdict(model.config), indent=2, sort_keys=True) + "\n")


def load(folder: Path, weights: Path | None = None) -> nn.Module:
    from safetensors.torch import load_file

    settings = json.loads((Path(folder) / CONFIG).read_text())
    kinds = {"unit_mel": (UnitMelConfig, UnitMelVocoder), "hifigan": (HifiGanConfig, UnitHifiGan)}
    if settings.get("kind") not in kinds:
        raise ValueError(f"{Path(folder) / CONFIG}: unknown vocoder kind {settings.get('kind')!r}")
    config_type, model_type = kinds[settings["kind"]]
    model = model_type(config_type(**settings))
    model.load_state_dict(load_file(str(weights or Path(folder) / WEIGHTS)))
    return model.eval()
