# fish completion for spane: Typer's script, by scripts/generate.py; do not edit.
complete --command spane --no-files --arguments "(env _SPANE_COMPLETE=complete_fish _TYPER_COMPLETE_FISH_ACTION=get-args _TYPER_COMPLETE_ARGS=(commandline -cp) spane)" --condition "env _SPANE_COMPLETE=complete_fish _TYPER_COMPLETE_FISH_ACTION=is-args _TYPER_COMPLETE_ARGS=(commandline -cp) spane"
