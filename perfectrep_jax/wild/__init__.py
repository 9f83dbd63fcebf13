"""In-the-wild inference: 2D keypoint files to 3D motion, animations and form reports.

- :mod:`~perfectrep_jax.wild.keypoints`: ViTPose/easy_ViTPose, AlphaPose, MMPose and .npy readers,
  person tracks, the lifter's Human3.6M-17 input.
- :mod:`~perfectrep_jax.wild.lift`: normalisation, windows with blending, flip augmentation,
  smoothing and output units, for any ``lift_fn`` callable.
- :mod:`~perfectrep_jax.wild.render`: the 3D skeleton (beside the 2D input) as MP4 or GIF.
- :mod:`~perfectrep_jax.wild.infer`: ``infer``, what ``perfectrep-jax infer`` calls.
"""
