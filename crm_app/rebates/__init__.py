"""IB rebates: versioned rules, the engine (one row per closing deal per receiving IB),
settlement paid through balance operations, and the IB's commission reports."""
