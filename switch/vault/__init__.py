"""Card data handling: validation, brand and BIN, tokens and fingerprints. The PAN never leaves memory."""
