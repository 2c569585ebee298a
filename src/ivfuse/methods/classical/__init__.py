"""Classical fusion baselines; importing this package registers them all.

=========  ===========================================================================
name       method
=========  ===========================================================================
average    pixel-wise mean
max        pixel-wise choose-max
lp         Laplacian pyramid (Burt & Adelson 1983): averaged base, max-abs details
dwt        discrete wavelet transform (Li, Manjunath & Mitra 1995), same rules
dtcwt      dual-tree complex wavelet transform (Lewis et al. 2007), max-magnitude details
gff        guided filtering fusion (Li, Kang & Hu, IEEE TIP 2013)
gtf        gradient transfer fusion (Ma, Chen, Li & Huang, Information Fusion 2016)
=========  ===========================================================================
"""

from ._common import guided_filter
from .gradient_transfer import GradientTransferFusion, tv_l1
from .guided import GuidedFilterFusion
from .pixel import Average, ChooseMax
from .pyramid import LaplacianPyramid
from .wavelet import DualTreeFusion, WaveletFusion

__all__ = [
    "Average",
    "ChooseMax",
    "DualTreeFusion",
    "GradientTransferFusion",
    "GuidedFilterFusion",
    "LaplacianPyramid",
    "WaveletFusion",
    "guided_filter",
    "tv_l1",
]
