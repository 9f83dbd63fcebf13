"""A PyTorch DSTformer and action model with upstream's state-dict layout (needs the torch extra).

This is the project's own PyTorch reference: it exists to check exports
(``load_state_dict(strict=True)`` of what ``perfectrep-jax export`` writes) and to time the same
model side by side with the JAX one in ``benchmarks/``. Its parameter names are upstream's
(``blocks_st.0.attn_s.qkv.weight``, ``pre_logits.fc.weight``, ``head.bn.running_var``...), so
the upstream checkpoints in ``../shared/fixtures/parity`` load into it strictly, and its
computation follows upstream's: activations as (B*T, J, C), attention as explicit
``softmax(q k^T * scale) v`` in the spatial and the temporal arrangement.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from perfectrep_jax.models.dstformer import DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig


class TorchAttention(nn.Module):
  def __init__(self, cfg: DSTformerConfig, temporal: bool):
    super().__init__()
    self.temporal = temporal
    self.heads = cfg.num_heads
    self.scale = cfg.qk_scale or cfg.head_dim**-0.5
    self.qkv = nn.Linear(cfg.dim_feat, 3 * cfg.dim_feat, bias=cfg.qkv_bias)
    self.proj = nn.Linear(cfg.dim_feat, cfg.dim_feat)
    self.attn_drop = nn.Dropout(cfg.attn_drop_rate)
    self.proj_drop = nn.Dropout(cfg.drop_rate)

  def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
    bt, j, c = x.shape
    h, d = self.heads, c // self.heads
    q, k, v = self.qkv(x).reshape(bt, j, 3, h, d).permute(2, 0, 3, 1, 4)  # each (BT, H, J, D)
    if self.temporal:  # (B, H, J, T, D): attend over frames
      q, k, v = (a.reshape(bt // frames, frames, h, j, d).permute(0, 2, 3, 1, 4) for a in (q, k, v))
    attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
    out = attn @ v
    if self.temporal:  # (B, H, J, T, D) -> (B, T, J, H, D)
      out = out.permute(0, 3, 2, 1, 4)
    else:  # (BT, H, J, D) -> (BT, J, H, D)
      out = out.transpose(1, 2)
    out = out.reshape(bt, j, c)
    return self.proj_drop(self.proj(out))


class TorchMLP(nn.Module):
  def __init__(self, dim: int, hidden: int, drop: float):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
    self.drop = nn.Dropout(drop)

  def forward(self, x):
    return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class TorchBlock(nn.Module):
  def __init__(self, cfg: DSTformerConfig, spatial_first: bool, drop_path: float):
    super().__init__()
    c, eps = cfg.dim_feat, 1e-6
    hidden = int(c * cfg.mlp_ratio)
    self.spatial_first = spatial_first
    self.drop_path = drop_path
    self.norm1_s, self.norm1_t = nn.LayerNorm(c, eps=eps), nn.LayerNorm(c, eps=eps)
    self.attn_s, self.attn_t = TorchAttention(cfg, False), TorchAttention(cfg, True)
    self.norm2_s, self.norm2_t = nn.LayerNorm(c, eps=eps), nn.LayerNorm(c, eps=eps)
    self.mlp_s = TorchMLP(c, hidden, cfg.drop_rate)
    self.mlp_t = TorchMLP(c, hidden, cfg.drop_rate)

  def _branch(self, y):
    if not self.training or self.drop_path == 0:
      return y
    keep = 1 - self.drop_path
    mask = torch.empty((y.shape[0],) + (1,) * (y.ndim - 1), device=y.device).bernoulli_(keep)
    return y * mask / keep

  def forward(self, x, frames):
    stages = [
      (self.norm1_s, self.attn_s, self.norm2_s, self.mlp_s),
      (self.norm1_t, self.attn_t, self.norm2_t, self.mlp_t),
    ]
    for norm1, attn, norm2, mlp in stages if self.spatial_first else stages[::-1]:
      x = x + self._branch(attn(norm1(x), frames))
      x = x + self._branch(mlp(norm2(x)))
    return x


class TorchDSTformer(nn.Module):
  """Same computation as ``perfectrep_jax.models.DSTformer``; input (B, T, J, dim_in)."""

  def __init__(self, cfg: DSTformerConfig):
    super().__init__()
    c = cfg.dim_feat
    self.cfg = cfg
    self.joints_embed = nn.Linear(cfg.dim_in, c)
    self.pos_drop = nn.Dropout(cfg.drop_rate)
    rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
    self.blocks_st = nn.ModuleList([TorchBlock(cfg, True, r) for r in rates])
    self.blocks_ts = nn.ModuleList([TorchBlock(cfg, False, r) for r in rates])
    self.norm = nn.LayerNorm(c, eps=1e-6)
    self.pre_logits = (
      nn.Sequential()
      if not cfg.dim_rep
      else nn.Sequential(OrderedDict(fc=nn.Linear(c, cfg.dim_rep), act=nn.Tanh()))
    )
    self.head = nn.Linear(cfg.rep_width, cfg.dim_out) if cfg.dim_out else nn.Identity()
    self.temp_embed = nn.Parameter(torch.zeros(1, cfg.maxlen, 1, c))
    self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_joints, c))
    if cfg.att_fuse:
      self.ts_attn = nn.ModuleList([nn.Linear(2 * c, 2) for _ in range(cfg.depth)])

  def representation(self, x: torch.Tensor) -> torch.Tensor:
    b, t, j, _ = x.shape
    x = self.joints_embed(x.reshape(b * t, j, -1)) + self.pos_embed
    x = (x.reshape(b, t, j, -1) + self.temp_embed[:, :t]).reshape(b * t, j, -1)
    x = self.pos_drop(x)
    for i, (blk_st, blk_ts) in enumerate(zip(self.blocks_st, self.blocks_ts)):
      x_st, x_ts = blk_st(x, t), blk_ts(x, t)
      if self.cfg.att_fuse:
        alpha = self.ts_attn[i](torch.cat([x_st, x_ts], dim=-1)).softmax(dim=-1)
        x = x_st * alpha[..., 0:1] + x_ts * alpha[..., 1:2]
      else:
        x = (x_st + x_ts) * 0.5
    return self.pre_logits(self.norm(x).reshape(b, t, j, -1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.head(self.representation(x))


class TorchActionNet(nn.Module):
  """Backbone + classification (or embedding) head over (N, M, T, J, C)."""

  def __init__(self, cfg: ActionConfig):
    super().__init__()
    self.cfg = cfg
    self.backbone = TorchDSTformer(cfg.backbone)
    width = cfg.backbone.rep_width * cfg.backbone.num_joints
    self.head = nn.Module()
    self.head.dropout = nn.Dropout(cfg.dropout_ratio)
    self.head.fc1 = nn.Linear(width, cfg.hidden_dim)
    if cfg.version == "class":
      self.head.bn = nn.BatchNorm1d(cfg.hidden_dim, eps=1e-5, momentum=0.1)
      self.head.fc2 = nn.Linear(cfg.hidden_dim, cfg.num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, m, t, j, c = x.shape
    rep = self.backbone.representation(x.reshape(n * m, t, j, c))
    feat = self.head.dropout(rep.reshape(n, m, t, j, -1)).mean(dim=2).reshape(n, m, -1).mean(dim=1)
    feat = self.head.fc1(feat)
    if self.cfg.version == "embed":
      return F.normalize(feat, dim=-1)
    return self.head.fc2(F.relu(self.head.bn(feat)))


def build_torch_model(kind: str, cfg) -> nn.Module:
  return TorchDSTformer(cfg) if kind == "lifter" else TorchActionNet(cfg)
