"""The usvcl lesion segmenter: a timm `features_only` encoder, a light U-Net-style decoder and a presence head."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_lesion import LesionConfig
from .losses_lesion import segmentation_loss


@dataclass
class LesionSegmentationOutput(ModelOutput):
    """
    Output of [`LesionSegmentationModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): Dice + BCE (+ presence BCE), when `labels` are given.
        logits (`torch.FloatTensor` of shape `(B, 1, H, W)`): lesion mask logits at the input's size;
            `sigmoid(logits)` is the per-pixel lesion probability.
        lesion_probability (`torch.FloatTensor` of shape `(B,)`): probability that the image shows a lesion, by
            `config.presence_score`: `max_xy sigmoid(logits)` (`"max_pixel"`) or `sigmoid(presence_logits)`
            (`"head"`).
        presence_logits (`torch.FloatTensor` of shape `(B,)`): logit of the presence head.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    lesion_probability: torch.FloatTensor | None = None
    presence_logits: torch.FloatTensor | None = None


class LesionDecoderConv(nn.Conv2d):
    """A convolution of the decoder: with `LesionHeadLinear`, the only layers `_init_weights` initialises."""


class LesionHeadLinear(nn.Linear):
    """The presence head's linear layer."""


class DecoderBlock(nn.Module):
    """Upsample x2 to the skip's size, concatenate the skip, then two `3x3 conv -> BatchNorm -> ReLU`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            LesionDecoderConv(in_channels + skip_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            LesionDecoderConv(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`features (B, C_in, h, w)`, `skip (B, C_skip, H', W')` -> `(B, C_out, H', W')`."""
        upsampled = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([upsampled, skip], dim=1))  # (B, C_in + C_skip, H', W') -> (B, C_out, H', W')


class LesionPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading of the lesion model."""

    config_class = LesionConfig
    base_model_prefix = "lesion"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the decoder and presence head only; timm's initialisation of the encoder is left alone."""
        if isinstance(module, LesionDecoderConv):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, LesionHeadLinear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)


class LesionSegmentationModel(LesionPreTrainedModel):
    """Encoder (timm, `features_only`) -> U-Net decoder -> mask logits at input size, plus lesion presence."""

    def __init__(self, config: LesionConfig) -> None:
        super().__init__(config)
        self.encoder = timm.create_model(config.backbone, pretrained=False, features_only=True,
                                         in_chans=config.in_chans)
        channels = self.encoder.feature_info.channels()
        widths = [int(width) for width in config.decoder_channels]
        if len(widths) > len(channels) - 1:
            raise ValueError(f"`decoder_channels` has {len(widths)} blocks but {config.backbone!r} has "
                             f"{len(channels)} feature stages, so at most {len(channels) - 1} blocks fit.")
        skip_channels = channels[-2 :: -1][: len(widths)]  # the stages each block fuses, deepest first
        inputs = [channels[-1], *widths[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(width_in, skip, width) for width_in, skip, width in zip(inputs, skip_channels, widths)
        )
        self.segmentation_head = LesionDecoderConv(widths[-1], 1, kernel_size=1)
        self.presence_head = LesionHeadLinear(channels[-1], 1)
        self.post_init()

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Encoder stages (shallow to deep) -> mask logits `(B, 1, H, W)` at `size` (bilinear from the last block)."""
        hidden = features[-1]  # (B, C_n, H/32, W/32) for a stride-32 encoder
        for block, skip in zip(self.decoder, features[-2::-1]):
            hidden = block(hidden, skip)  # (B, width_i, H/2^k, W/2^k)
        logits = self.segmentation_head(hidden)  # (B, 1, h, w)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, 1, H, W)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> LesionSegmentationOutput | tuple:
        """`pixel_values (B, C, H, W)`, optional `labels (B, 1, H, W)` or `(B, H, W)` in {0, 1} -> mask logits
        `(B, 1, H, W)`, lesion probability `(B,)`, presence logits `(B,)` and the loss."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.encoder(pixel_values)  # stages, each (B, C_i, H / r_i, W / r_i)
        logits = self.decode(features, pixel_values.shape[-2:])  # (B, 1, H, W)
        presence_logits = self.presence_head(features[-1].mean(dim=(2, 3)))[:, 0]  # (B, C_n) -> (B, 1) -> (B,)
        if self.config.presence_score == "head":
            lesion_probability = torch.sigmoid(presence_logits)  # (B,)
        else:
            lesion_probability = torch.sigmoid(logits.flatten(1).amax(dim=1))  # (B, 1, H, W) -> (B,)
        loss = None
        if labels is not None:
            targets = labels[:, None] if labels.ndim == 3 else labels  # (B, H, W) -> (B, 1, H, W)
            loss = segmentation_loss(logits, presence_logits, targets, self.config.dice_weight,
                                     self.config.bce_weight, self.config.presence_weight)
        output = LesionSegmentationOutput(loss=loss, logits=logits, lesion_probability=lesion_probability,
                                          presence_logits=presence_logits)
        return output if return_dict else output.to_tuple()


__all__ = ["LesionPreTrainedModel", "LesionSegmentationModel", "LesionSegmentationOutput"]
