"""Development and demo kit (synthetic scenes, MOT helpers): the runtime never imports it."""
