"""Lambda function sources; each folder is packaged by ``migctl lambda build``."""
