"""What pi0 and pi0.5 share: PaliGemma prefix, joint VLM+expert layers, flow matching, indices, loading.

Both policies are PaliGemma (SigLIP + Gemma-2B) plus a smaller Gemma "action expert" that attends jointly
with the VLM layer by layer. They differ only in the suffix (pi0: state token + action/time MLP; pi0.5:
action tokens, time through adaptive RMSNorm, state as text in the prefix). Everything else lives here once:

- `config`: sizes (`Arch`), options, the layer-index conventions and `VLAInfo` (no torch);
- `adapter`: the shared `VLAAdapter` (no torch; the model loads inside `build`);
- `tokenizer`, `preprocess` (images, and where the vision tokens sit), `layers` (the joint layer loop,
  flow-matching time), `policy` (the shared model, `forward_align`, `predict_action`, LoRA).

Why our own joint layer loop instead of transformers' cache-based PI0 forward: the loop gives the per-layer
prefix states of the very forward that computes the action loss (the ROCKET alignment needs them), and it
stays correct under gradient checkpointing, where transformers drops the KV cache that the expert reads.
"""
