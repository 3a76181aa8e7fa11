"""usvcl models: a timm CNN encoder with a projection head, for contrastive pretraining and classification."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_usvcl import UsvclConfig
from .losses import hard_triplet_loss, info_nce_loss, l2_normalize


@dataclass
class UsvclModelOutput(ModelOutput):
    """
    Output of [`UsvclModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(B, embedding_dim)`): L2-normalised projection of the features.
        pooler_output (`torch.FloatTensor` of shape `(B, num_features)`): globally pooled backbone features.
        last_hidden_state (`torch.FloatTensor` of shape `(B, num_features, h, w)`): the backbone's last feature map.
    """

    embeddings: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


@dataclass
class UsvclContrastiveOutput(ModelOutput):
    """
    Output of [`UsvclForContrastivePretraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`): the configured contrastive loss.
        anchor_embeddings (`torch.FloatTensor` of shape `(B, embedding_dim)`).
        positive_embeddings (`torch.FloatTensor` of shape `(B, P, embedding_dim)`).
        negative_embeddings (`torch.FloatTensor` of shape `(B, N, embedding_dim)`, or `(M, embedding_dim)` when
            the batch shares one pool of `M` negatives).
    """

    loss: torch.FloatTensor | None = None
    anchor_embeddings: torch.FloatTensor | None = None
    positive_embeddings: torch.FloatTensor | None = None
    negative_embeddings: torch.FloatTensor | None = None


@dataclass
class UsvclImageClassifierOutput(ModelOutput):
    """
    Output of [`UsvclForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): cross-entropy on `calibrated_logits`, when `labels` are
            given.
        logits (`torch.FloatTensor` of shape `(B, num_labels)`): `calibrated_logits + config.decision_offset()`;
            their argmax is the calibrated decision (`P(malignant) >= config.decision_threshold`) when
            `config.threshold_in_logits`, and they equal `calibrated_logits` otherwise.
        calibrated_logits (`torch.FloatTensor` of shape `(B, num_labels)`): class scores divided by
            `config.calibration_temperature`, plus `config.calibration_bias` on the positive class; their softmax
            gives the calibrated probabilities.
        embeddings (`torch.FloatTensor` of shape `(B, embedding_dim)`): L2-normalised projection.
        pooler_output (`torch.FloatTensor` of shape `(B, num_features)`): pooled backbone features.
        ood_score (`torch.FloatTensor` of shape `(B,)`, *optional*): out-of-distribution score of each image
            ([`UsvclFeatureDensity`]; above `config.ood_threshold` = unlike the training images); `None` for a model
            without the statistics.
        last_hidden_state (`torch.FloatTensor` of shape `(B, num_features, h, w)`): the backbone's last feature map
            (what the pooled features average; training's auxiliary lesion-mask loss reads it).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    calibrated_logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    ood_score: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class UsvclHeadLinear(nn.Linear):
    """A linear layer of a usvcl head: the only layers `_init_weights` initialises (the backbone keeps timm's init)."""


def build_mlp(in_features: int, hidden_features: int, out_features: int, dropout: float = 0.0) -> nn.Sequential:
    """`Dropout -> Linear -> ReLU -> Dropout -> Linear`, or one linear layer when `hidden_features == 0`."""
    if hidden_features == 0:
        return nn.Sequential(nn.Dropout(dropout), UsvclHeadLinear(in_features, out_features))
    return nn.Sequential(
        nn.Dropout(dropout),
        UsvclHeadLinear(in_features, hidden_features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        UsvclHeadLinear(hidden_features, out_features),
    )


class UsvclFeatureDensity(nn.Module):
    r"""Gaussian model (probabilistic PCA) of the training images' pooled features: an out-of-distribution score.

    With `c = x - mean` for features `x (B, F)`, `p = c U^T` on the `k` principal directions `U (k, F)` with
    variances `lambda (k,)`, and the residual `r^2 = ||c||^2 - ||p||^2` spread over the other `F - k` directions
    with variance `sigma^2`:

    $$\text{score}(x) = \frac{1}{F}\Big(\sum_{i=1}^{k} \frac{p_i^2}{\lambda_i} + \frac{r^2}{\sigma^2}\Big),$$

    the squared Mahalanobis distance per feature under that Gaussian (about 1 for images like the training ones).
    The buffers are filled by `training.export.ood` and saved with the weights.
    """

    def __init__(self, num_features: int, num_components: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("components", torch.zeros(num_components, num_features))
        self.register_buffer("variances", torch.ones(num_components))
        self.register_buffer("residual_variance", torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`features (B, F)` -> score `(B,)`."""
        centred = features.float() - self.mean  # (B, F)
        projected = centred @ self.components.T  # (B, k)
        residual = (centred.pow(2).sum(-1) - projected.pow(2).sum(-1)).clamp_min(0.0)  # (B,)
        distance = (projected.pow(2) / self.variances).sum(-1) + residual / self.residual_variance  # (B,)
        return distance / features.shape[-1]


class UsvclPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading shared by the usvcl models."""

    config_class = UsvclConfig
    base_model_prefix = "usvcl"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the new heads only; timm's own initialisation of the backbone is left alone."""
        if isinstance(module, UsvclHeadLinear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, UsvclFeatureDensity):  # statistics not yet fitted: a neutral Gaussian
            for buffer in (module.mean, module.components):
                init.zeros_(buffer)
            for buffer in (module.variances, module.residual_variance):
                init.ones_(buffer)
        if hasattr(module, "init_non_persistent_buffers"):  # not in a checkpoint: rebuilt, as TimmWrapper does
            module.init_non_persistent_buffers()

    def _output(self, output: ModelOutput, return_dict: bool | None) -> ModelOutput | tuple:
        """`output`, or `output.to_tuple()` when `return_dict` (default `config.return_dict`) is False."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


class UsvclModel(UsvclPreTrainedModel):
    """timm backbone (`pretrained=False`, pooled features) followed by a projection to L2-normalised embeddings."""

    def __init__(self, config: UsvclConfig) -> None:
        super().__init__(config)
        self.backbone = timm.create_model(
            config.backbone,
            pretrained=config.init_from_imagenet,
            num_classes=0,
            in_chans=config.in_chans,
        )
        self.projection = build_mlp(self.num_features, config.projection_hidden_dim, config.embedding_dim)
        self.post_init()

    @property
    def num_features(self) -> int:
        """Width of the pooled backbone features (timm's `head_hidden_size` where a model has a pre-logits layer)."""
        return getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features

    def stage_names(self) -> list[str]:
        """Names of the backbone's feature stages, first to last (timm `feature_info`)."""
        return [stage["module"] for stage in self.backbone.feature_info]

    def last_stage(self) -> nn.Module:
        """The backbone's last feature stage (the usual Grad-CAM target layer)."""
        return self.backbone.get_submodule(self.stage_names()[-1])

    def set_trainable_layers(self, trainable_layers: int) -> None:
        """Unfreeze the last `trainable_layers` backbone stages and everything after them (-1 = all, 0 = none)."""
        parameters = list(self.backbone.named_parameters())
        if trainable_layers < 0:
            first_trainable = 0
        elif trainable_layers == 0:
            first_trainable = len(parameters)
        else:
            stage_prefix = self.stage_names()[-min(trainable_layers, len(self.stage_names()))] + "."
            first_trainable = next(i for i, (name, _) in enumerate(parameters) if name.startswith(stage_prefix))
        for index, (_, parameter) in enumerate(parameters):
            parameter.requires_grad_(index >= first_trainable)

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs
    ) -> UsvclModelOutput | tuple:
        """`pixel_values (B, C, H, W)` -> embeddings `(B, D)`, pooled features `(B, F)`, feature map `(B, F, h, w)`.

        With `return_dict=False` (or `config.return_dict=False`) the same fields come as a tuple, in that order.
        """
        feature_map = self.backbone.forward_features(pixel_values)  # (B, F, h, w)
        pooled = self.backbone.forward_head(feature_map, pre_logits=True)  # (B, F)
        embeddings = l2_normalize(self.projection(pooled))  # (B, D)
        output = UsvclModelOutput(embeddings=embeddings, pooler_output=pooled, last_hidden_state=feature_map)
        return self._output(output, return_dict)


class UsvclForContrastivePretraining(UsvclPreTrainedModel):
    """Encoder trained with the hard triplet loss (or InfoNCE) on anchor / positives / negatives."""

    def __init__(self, config: UsvclConfig) -> None:
        super().__init__(config)
        self.usvcl = UsvclModel(config)
        self.post_init()

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(..., C, H, W)` -> `(..., D)` L2-normalised embeddings in one backbone pass."""
        leading_shape = pixel_values.shape[:-3]
        flat = pixel_values.reshape(-1, *pixel_values.shape[-3:])  # (..., C, H, W) -> (prod(...), C, H, W)
        embeddings = self.usvcl(flat, return_dict=True).embeddings  # (prod(...), D)
        return embeddings.reshape(*leading_shape, -1)  # (prod(...), D) -> (..., D)

    def contrastive_loss(
        self,
        anchor: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        negative_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The configured loss on `anchor (B, D)`, `positives (B, P, D)`, `negatives (B, N, D)`."""
        config = self.config
        if config.loss == "info_nce":
            return info_nce_loss(
                anchor, positives, negatives, temperature=config.temperature, negative_mask=negative_mask
            )
        return hard_triplet_loss(
            anchor,
            positives,
            negatives,
            margin=config.margin,
            num_hard_positives=config.num_hard_positives,
            num_hard_negatives=config.num_hard_negatives,
            positive_reduction=config.positive_reduction,
            negative_mask=negative_mask,
        )

    def forward(
        self,
        pixel_values: torch.Tensor,
        num_positives: int | None = None,
        negative_pixel_values: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UsvclContrastiveOutput | tuple:
        """Embed every frame and compute the loss (a tuple of the output fields with `return_dict=False`).

        Args:
            pixel_values: `(B, 1+P+N, C, H, W)`: anchor, P positives, N negatives per row; or `(B, 1+P, C, H, W)`
                when `negative_pixel_values` gives one shared pool.
            num_positives: P (defaults to `config.num_positives`, or to all but the anchor in shared mode).
            negative_pixel_values: optional `(M, C, H, W)` negatives shared by the whole batch.
            negative_mask: optional `(B, N)` or `(B, M)` bool, False for negatives an anchor must not use
                (in shared mode: the anchor's own patient).
        """
        shared_pool = negative_pixel_values is not None
        if num_positives is None:
            num_positives = pixel_values.shape[1] - 1 if shared_pool else self.config.num_positives
        if pixel_values.shape[1] < 2 + (0 if shared_pool else num_positives):
            raise ValueError(
                f"`pixel_values` must be (B, 1+P+N, C, H, W) with P={num_positives} and N>=1, "
                f"got {tuple(pixel_values.shape)}."
            )
        batch_size = pixel_values.shape[0]
        if shared_pool:
            # (B, 1+P, C, H, W) and (M, C, H, W) -> (B*(1+P) + M, C, H, W): one backbone pass
            frames = torch.cat([pixel_values.flatten(0, 1), negative_pixel_values], dim=0)
            embeddings = self.embed(frames)  # (B*(1+P) + M, D)
            row_embeddings = embeddings[: batch_size * pixel_values.shape[1]].unflatten(0, pixel_values.shape[:2])
            pool = embeddings[batch_size * pixel_values.shape[1] :]  # (M, D)
            negatives = pool.unsqueeze(0).expand(batch_size, -1, -1)  # (M, D) -> (B, M, D)
            negative_output = pool
        else:
            row_embeddings = self.embed(pixel_values)  # (B, 1+P+N, D)
            negatives = row_embeddings[:, 1 + num_positives :]  # (B, N, D)
            negative_output = negatives
        anchor = row_embeddings[:, 0]  # (B, D)
        positives = row_embeddings[:, 1 : 1 + num_positives]  # (B, P, D)
        loss = self.contrastive_loss(anchor, positives, negatives, negative_mask)
        output = UsvclContrastiveOutput(
            loss=loss, anchor_embeddings=anchor, positive_embeddings=positives, negative_embeddings=negative_output
        )
        return self._output(output, return_dict)


class UsvclForImageClassification(UsvclPreTrainedModel):
    """Encoder plus a classifier head on the pooled backbone features (benign / malignant by default)."""

    def __init__(self, config: UsvclConfig) -> None:
        super().__init__(config)
        self.usvcl = UsvclModel(config)
        self.classifier = build_mlp(
            self.usvcl.num_features, config.classifier_hidden_dim, config.num_labels, config.classifier_dropout
        )
        self.feature_density = (
            UsvclFeatureDensity(self.usvcl.num_features, config.ood_components) if config.ood_components else None
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> UsvclImageClassifierOutput | tuple:
        """`pixel_values (B, C, H, W)`, optional `labels (B,)` -> logits `(B, num_labels)` and loss (a tuple of the
        output fields with `return_dict=False`).

        `calibrated = classifier(pooled) / T + c` (T = `calibration_temperature`, `c = config.calibration_offset()`:
        `calibration_bias` on the positive class), `logits = calibrated + b` with `b = config.decision_offset()`
        (zeros unless `threshold_in_logits`).
        """
        encoded = self.usvcl(pixel_values, return_dict=True)
        scores = self.classifier(encoded.pooler_output)  # (B, num_labels)
        calibration = torch.tensor(self.config.calibration_offset(), dtype=scores.dtype, device=scores.device)
        calibrated = scores / self.config.calibration_temperature + calibration  # (B, num_labels) + (num_labels,)
        offset = torch.tensor(self.config.decision_offset(), dtype=calibrated.dtype, device=calibrated.device)
        loss = None
        if labels is not None:
            weight = None
            if self.config.class_weights is not None:
                weight = torch.tensor(self.config.class_weights, dtype=calibrated.dtype, device=calibrated.device)
            loss = nn.functional.cross_entropy(calibrated, labels, weight=weight)
        output = UsvclImageClassifierOutput(
            loss=loss,
            logits=calibrated + offset,  # (B, num_labels) + (num_labels,)
            calibrated_logits=calibrated,
            embeddings=encoded.embeddings,
            pooler_output=encoded.pooler_output,
            ood_score=None if self.feature_density is None else self.feature_density(encoded.pooler_output),
            last_hidden_state=encoded.last_hidden_state,
        )
        return self._output(output, return_dict)


__all__ = [
    "UsvclContrastiveOutput",
    "UsvclFeatureDensity",
    "UsvclForContrastivePretraining",
    "UsvclForImageClassification",
    "UsvclImageClassifierOutput",
    "UsvclModel",
    "UsvclModelOutput",
    "UsvclPreTrainedModel",
]
