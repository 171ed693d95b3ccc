"""Bias mitigation for reconstructors: variants `<base>+<strategy>` that fine-tune a trained base against bias."""
