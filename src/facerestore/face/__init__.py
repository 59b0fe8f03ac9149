"""Face detection, landmarks, alignment and paste-back."""
