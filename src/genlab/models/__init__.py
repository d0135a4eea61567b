"""Networks, one module per family; ``MODELS[family](cfg, image_shape, num_classes)`` builds the
modules a run trains and saves (a dict name -> nn.Module; 'model' is the one used for inference)."""

from genlab.models import gan, unet, vae

MODELS = {"vae": vae.build, "gan": gan.build, "ddpm": unet.build}
