"""Workflows that use one secret everywhere a template can go, for the tests that look for
it in every table, Redis key and log."""

SECRET = "s3cr3t-Vq8Zt"

CHILD = """version: 1
name: secret-child
nodes:
  echo: {type: transform, config: {output: "{{ input }}"}}
"""

PARENT = """version: 1
name: secret-everywhere
nodes:
  loop:
    type: transform
    foreach: ["{{ secrets.TOKEN }}", "plain"]
    config: {output: "item {{ item }} and {{ secrets.TOKEN }}"}
  show:
    type: transform
    config: {output: {value: "{{ secrets.TOKEN }}", nested: ["{{ secrets.TOKEN }}"]}}
  say:
    type: shell
    config:
      run: 'echo "token is $TOKEN"; echo "again $TOKEN" >&2'
      env: {TOKEN: "{{ secrets.TOKEN }}"}
  call:
    type: workflow
    config: {workflow: ./child.yaml, input: {token: "{{ secrets.TOKEN }}"}}
  broken:
    type: fail
    needs: [say]
    config: {message: "failed with {{ secrets.TOKEN }}"}
"""
