"""fairspeech's own speech recognizers, trained on CPU, auditable per cohort.

Models (pure ``nn.Module``s, one per file):
    features.py      log-mel filterbanks in torch, global CMVN, SpecAugment
    tokenizer.py     character and BPE tokenizers for CTC
    encoder.py       4x convolutional subsampling + chunked-attention transformer (optional causal convolution)
    ctc_model.py     the baseline CTC model, and ``ASROutput`` shared by all models
    amortized.py     amortized branched encoder: arbitrator, slow and low-rank fast branches (Macoskey et al.)
    block_gating.py  per-frame gating of attention and feed-forward blocks (Xie et al.)

Around them:
    data.py          wav reading, per-split log-mel caches, length-bucketed batches
    train.py         training loop, checkpoints with exact resume (checkpoint.py), ``python -m fairspeech.asr.train``
    decode.py        greedy and prefix beam search CTC decoding
    evaluate.py      transcribe, write an auditable manifest, run the audit; ``python -m fairspeech.asr.evaluate``
    routing.py       Gumbel-sigmoid gates and temperature annealing
    backlog.py       audio backlog on a device and the amortization loss
    flops.py         FLOPs with torch's FLOP counter; efficiency.py: FLOPs and latency per utterance on a profile
    recognizer.py    a trained model as a recognizer of wav files
    results.py       benchmark JSON from experiment folders; config.py: recipe TOML -> dataclasses
    synthetic.py     a tiny tone corpus for tests

``pocketsphinx_backend.py`` and ``transcribe.py`` wrap the pocketsphinx recognizer used by the audit.
"""
