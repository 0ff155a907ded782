"""Synthetic worlds (context-free grammars, bioS biographies, iGSM) and the small LMs trained on them."""
