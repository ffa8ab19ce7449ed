"""Risk and compliance: velocity, rules, BIN and geo facts, sanctions screening, SCA, reviews."""
