"""The numbers of the paper and of its official code, each named once with its source.

Sources: Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (ICLR 2018, arXiv 1710.10196), and the official TF1 implementation
tkarras/progressive_growing_of_gans (`config.py`, `networks.py`, `loss.py`, `train.py`).

The spec models (`progan_dsl.spec.models`), the layer kinds (`progan_dsl.kinds`) and the IR
(`progan_dsl.ir`) take their defaults from here. Pure Python: no torch, no pydantic.
`progan_dsl/nn/layers.py` keeps its own copies on purpose: it is copied verbatim into emitted
packages and must run with torch alone.
"""

from __future__ import annotations

import math

# ---- networks (Section 4, Table 2; official networks.py) ----------------------------------------
HE_GAIN = math.sqrt(2.0)  # Section 4.1: He initialiser constant sqrt(2 / fan_in); get_weight gain
TO_RGB_GAIN = 1.0  # official networks.py torgb(): conv2d(..., kernel=1, gain=1), linear
LRELU_SLOPE = 0.2  # Appendix A: leaky ReLU with leakiness 0.2 (official leaky_relu alpha=0.2)
PIXEL_NORM_EPS = 1e-8  # Section 4.2, epsilon = 1e-8 (official pixelnorm_epsilon)
CHANNEL_BASE = 8192  # official fmap_base: nf(stage) = min(8192 / 2**stage, 512)
CHANNEL_MAX = 512  # official fmap_max
CHANNEL_DECAY = 1.0  # official fmap_decay
LATENT_SIZE = 512  # Table 2: latent vectors of 512 (official latent_size = nf(0) = 512)
IMAGE_CHANNELS = 3  # Table 2: RGB images
BASE_RESOLUTION = 4  # Section 2 / Table 2: training starts at 4x4 (official lod_initial_resolution)
CONV_KERNEL = 3  # Table 2: "Conv 3x3" in every block
RGB_KERNEL = 1  # Table 2: toRGB / fromRGB are "Conv 1x1"
FUSED_SCALE_KERNEL = 3  # official upscale2d_conv2d / conv2d_downscale2d: fused for 3x3 kernels
MBSTD_GROUP = 4  # Section 3: minibatch stddev over groups of 4 (official mbstd_group_size = 4)
MBSTD_FEATURES = 1  # Section 3: the statistic is appended as one extra feature map

# ---- training (Appendix A; official config.py, loss.py, train.py) -------------------------------
ADAM_LR = 0.001  # Appendix A: learning rate 0.001
ADAM_BETA1 = 0.0  # Appendix A: beta1 = 0 (official G_opt/D_opt)
ADAM_BETA2 = 0.99  # Appendix A: beta2 = 0.99
ADAM_EPS = 1e-8  # Appendix A: epsilon = 1e-8
WGAN_GP_LAMBDA = 10.0  # Appendix A (Gulrajani et al.); official loss.py wgan_lambda = 10.0
WGAN_GP_TARGET = 1.0  # official loss.py wgan_target = 1.0 (target gradient norm)
WGAN_DRIFT = 0.001  # Appendix A: epsilon_drift = 0.001 (official wgan_epsilon)
G_EMA_DECAY = 0.999  # official train.py G_smoothing = 0.999 (Section 5: running average of G)
D_REPEATS = 1  # official train.py D_repeats = 1: one D step per G step
FADE_KIMG = 600  # official train.py lod_transition_kimg = 600 (the paper's Appendix A uses 800)
STABLE_KIMG = 600  # official train.py lod_training_kimg = 600 (the paper uses 800)
MINIBATCH_REPEATS = 4  # official train.py minibatch_repeats = 4: lod and lrate held over 4 steps
COND_WEIGHT = 1.0  # official loss.py cond_weight = 1.0: weight of the AC-GAN label penalties

# ---- metrics (Section 5; official metrics/) -----------------------------------------------------
MSSSIM_PAIRS = 10_000  # Section 5: MS-SSIM over 10k pairs (official log name "metric-msssim-20k")

# ---- not from the paper, named here so that every default has one home ---------------------------
R1_GAMMA = 10.0  # Mescheder et al. 2018 (R1 regulariser), the weight StyleGAN uses at 1024x1024

# ---- augmentation of D's inputs (not ProGAN: Karras et al. 2020, "Training Generative Adversarial
# Networks with Limited Data", arXiv 2006.06676, and its official stylegan2-ada-pytorch; Zhao et
# al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training", arXiv 2006.10738) -----
ADA_INTERVAL = 4  # ADA Section 3 / official ada_interval = 4: p adjusted every 4 minibatches
ADA_SPEED_KIMG = 500.0  # ADA Section 3 / official ada_kimg = 500: p may go 0 -> 1 in 500k images
ADA_TARGET_SIGN_REAL = 0.6  # ADA Section 3 / official ada_target = 0.6 for r_t = E[sign(D(real))]
ADA_LEAK_P = 0.8  # ADA Section 2.3 / Figure 3: below p ~ 0.8 the bgc pipeline does not leak
# The paired sign gap E[sign(D(real_i) - D(fake_i))] (this project's WGAN-GP heuristic): ADA's
# 0.6 carried over. Measured on 2,000 MNIST digits at 96 kimg (docs/benchmarks.md, "Augmentation
# on a small dataset"): without augmentation the gap reads 0.5-0.65 at 8x8 and 16x16, so 0.6
# holds p below 0.02 there; 0.4 holds p at 0.02-0.07. No target beat no augmentation at that
# budget; this default is not tuned beyond that.
ADA_TARGET_SIGN_GAP = 0.6
ADA_XINT_MAX = 0.125  # ADA official augment.py AugmentPipe xint_max: integer shift <= 1/8 side
ADA_SCALE_STD = 0.2  # ADA official scale_std: log2 of the isotropic scale ~ N(0, 0.2^2)
ADA_ROTATE_MAX = 1.0  # ADA official rotate_max: angle uniform in +-pi * 1 (the full turn)
ADA_ANISO_STD = 0.2  # ADA official aniso_std: log2 of the anisotropic scale ~ N(0, 0.2^2)
ADA_XFRAC_STD = 0.125  # ADA official xfrac_std: fractional shift ~ N(0, 0.125^2) of a side
ADA_BRIGHTNESS_STD = 0.2  # ADA official brightness_std: offset ~ N(0, 0.2^2)
ADA_CONTRAST_STD = 0.5  # ADA official contrast_std: log2 of the contrast factor ~ N(0, 0.5^2)
ADA_HUE_MAX = 1.0  # ADA official hue_max: hue angle uniform in +-pi * 1 (the full turn)
ADA_SATURATION_STD = 1.0  # ADA official saturation_std: log2 of the saturation factor ~ N(0, 1)
DIFFAUGMENT_BRIGHTNESS = 0.5  # DiffAugment_pytorch.py rand_brightness: offset ~ U(-0.5, 0.5)
DIFFAUGMENT_SATURATION_MAX = 2.0  # DiffAugment rand_saturation: factor ~ U(0, 2) about pixel mean
DIFFAUGMENT_CONTRAST_MIN = 0.5  # DiffAugment rand_contrast: factor ~ U(0.5, 1.5) about image mean
DIFFAUGMENT_CONTRAST_MAX = 1.5  # DiffAugment rand_contrast (upper end of the factor's range)
DIFFAUGMENT_TRANSLATION_RATIO = 0.125  # DiffAugment rand_translation ratio: shift <= 1/8 side
DIFFAUGMENT_CUTOUT_RATIO = 0.5  # DiffAugment rand_cutout ratio: a square of half the side is zeroed
