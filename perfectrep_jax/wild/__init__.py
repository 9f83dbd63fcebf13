"""In-the-wild inference: 2D keypoint files to 3D motion, animations and form reports.

- :mod:`~perfectrep_jax.wild.keypoints`: ViTPose/easy_ViTPose, AlphaPose, MMPose and .npy readers,
  person tracks, the lifter's Human3.6M-17 input.
- :mod:`~perfectrep_jax.wild.detect`: 2D keypoints from a video with MediaPipe (the ``video`` extra).
- :mod:`~perfectrep_jax.wild.lift`: normalisation, windows with blending, flip augmentation and its
  per-joint uncertainty, smoothing and output units, for any ``lift_fn`` callable.
- :mod:`~perfectrep_jax.wild.render`: the 3D skeleton (beside the 2D input) as MP4 or GIF.
- :mod:`~perfectrep_jax.wild.infer`: ``infer``, what ``perfectrep-jax infer`` calls.
- :mod:`~perfectrep_jax.wild.agreement`: whether feedback from lifted 2D agrees with the true 3D's,
  on the held-out performers' exercise takes.
"""
