from imgcls.cli import run

# Guarded: worker processes started with spawn/forkserver import this module and must not rerun the CLI.
if __name__ == "__main__":
    run()
