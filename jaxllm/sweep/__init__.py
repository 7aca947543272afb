"""Research ablations: sweep files expanded into runs (spec), run one after another (runner),
compared in a table (compare) and plotted (plot)."""
