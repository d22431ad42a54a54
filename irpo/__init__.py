"""irpo: Iterative Reasoning Preference Optimization (Pang et al., 2024, arXiv 2404.19733)."""

__version__ = "0.1.0"
