"""stylizer: neural style transfer (Gatys et al. 2015) on VGG19, as a library.

Images in, images out: no Discord, no database, no prints. The engine is
`stylizer.engine.Stylizer`; the parameters of a painting are `stylizer.params.StyleParams`.
Only the engine's modules import torch, so the bot process can use the image checks
(`images`), the presets and the pool's messages without paying for it.
"""
