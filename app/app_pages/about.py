"""About & limits: what the lab is, how to read it, and what it refuses."""
import streamlit as st

from app import pipeline as pl

st.title("About the GroupedMixer lab")
st.markdown(f"""
**What is this?** A learned image codec after *GroupedMixer* (Li et al., IEEE TCSVT 2024). A
neural network turns the photo into a small grid of numbers (the **latent**, 16x smaller per
side, with many channels), rounds them, and an **entropy model** predicts a probability for every
number so that an arithmetic coder (rANS) can write it in few bits. The better the prediction,
the smaller the file.

**Groups.** The latent is split into **G groups**: channel slices (*kc*) times spatial phases (a
*kh x kw* grid). The decoder decodes one group per step; each group is predicted from the
hyperprior (a tiny summary sent first) and from every group decoded before it. Inside a step, an
*inner-group* attention mixes the tokens of that group; across steps, a *cross-group* attention
looks back at earlier steps. The **context cache** stores the cross-group keys and values of
earlier steps so each step only computes its own tokens.

**How to read the Compress page.**
- *Result*: the real file size and quality, the decoded image, a zoomed crop and the error map,
  and JPEG/WebP/AVIF at about the same size.
- *Bit allocation*: how many bits each group really takes in the file, by slice, by phase, and where
  in the picture.
- *Entropy parameters*: the predicted means and scales, and any single latent channel.
- *Attention*: what a token looks at inside its group, and which earlier steps it listens to.
- *Latency*: where the time goes, and what the context cache saves.
- *Progressive decoding*: the picture after 0, 1, ..., G groups.

**Limits.**
- Uploads: PNG, JPEG, WebP, BMP, TIFF, at most {pl.MAX_FILE_BYTES >> 20} MB
  (`.streamlit/config.toml`, `server.maxUploadSize`) and {pl.MAX_PIXELS / 1e6:.1f} megapixels
  (`gm_core.images.MAX_PIXELS`).
- Photos above {pl.APP_MAX_PIXELS / 1e6:.2f} megapixels are downscaled (the ablation page: above
  {pl.ABLATION_MAX_PIXELS / 1e6:.2f} MP) so a 2-core CPU answers in seconds.
- Attention maps are traced up to {pl.ATTN_MAX_TOKENS} latent positions.
- Grayscale, 16-bit, CMYK, palette and transparent images are converted to 8-bit RGB (you are
  told so); EXIF rotation is applied; animated images use the first frame.
- A `.gmx` file decodes only with the checkpoint that made it.
- The server listens on 127.0.0.1 only and sends no usage statistics.
""")
