# Sourced by the offline image scripts. copy_with_libs <root> <binary>: copies a host binary to the
# same path under <root>, with every shared library `ldd` lists for it (skipping those already there).
copy_with_libs() {
  local root=$1 bin=$2
  [ -e "$bin" ] || return 0
  mkdir -p "$root$(dirname "$bin")"
  cp -L "$bin" "$root$bin"
  ldd "$bin" 2>/dev/null | awk '/=> \// {print $3} /^\s*\/lib/ {print $1}' | while read -r lib; do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
}
