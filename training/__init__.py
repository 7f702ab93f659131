"""Self-supervised training of depth, ego-motion and dynamic-object motion (imported as depth_sfm_training)."""
