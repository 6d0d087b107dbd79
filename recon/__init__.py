"""k-space reconstruction and sign-flip background removal.

The public names are imported on first use (PEP 562): ``from dualmode.recon import nufft``
imports the NUFFT only, not every reconstruction module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dualmode.lazy import attach

if TYPE_CHECKING:  # what static tools and readers see; imported lazily below
    # reconstruction beyond the basic FFT (Cartesian extras, partial Fourier, iterative, coils)
    from .cartesian import reconstruct_image, zero_fill, zero_fill_affine
    from .coils import noise_covariance, rss, svd_combine, walsh_combine, walsh_sensitivities, whiten
    from .hyperpolarized import (
        constant_signal_flip_angles, correct_rf_depletion, excitation_weights, kspace_weighting,
        line_order_centre_out, line_order_linear, psf_metrics, psf_of_weighting,
    )
    from .iterative import (
        admm_tv, cg, fista, l1_wavelet_recon, least_squares, soft_threshold, tv_objective, tv_prox, tv_recon,
        wavelet_prox,
    )
    from .linop import FFTOp, Linop, MatrixOp, NUFFTOp, RestrictOp, SenseOp
    from .partial_fourier import homodyne, low_resolution_phase, pocs
    from .windows import apodize, kspace_window, psf_fwhm, psf_of_window, window_1d, window_tradeoff

    # sign-flip lock-in (MRI) and modulated-fluorescence lock-in (optics), with QC metrics
    from .displacement import correct_shot_shifts, estimate_shot_shifts, kspace_shift_phase, shift_report
    from .optical_lockin import OpticalLockinResult, optical_lockin
    from .schemes import cancelled_drift_order, describe_scheme, drift_efficiency, polarization_scheme
    from .signflip import SignFlipResult, robust_noise_sigma, signflip_combine
    from .nufft import NUFFTPlan, nufft, nufft_adjoint
    from .toeplitz import apply_toeplitz, toeplitz_kernel
    from .metrics import optical_metrics, optical_panels, signflip_metrics, signflip_panels
    from .optics_prior import (
        choose_kspace_samples, choose_phase_encodes, condition_number, fourier_matrix, line_coords, support_lstsq,
        support_mask,
    )
    from .dcf import pipe_menon_dcf, ramp_dcf
    from .trajectory import golden_angle_radial, mask_coords, poisson_disc_mask, radial_3d, variable_density_spiral

__all__, __getattr__, __dir__ = attach(__name__, __file__)
