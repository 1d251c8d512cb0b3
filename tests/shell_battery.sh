# A shell battery for tests/real_programs.rs: run by Debian's busybox sh and
# by bash-static, on our kernel and on Linux; the lines it prints must be
# the same on both systems.  Every line is deterministic (no PIDs, times or
# addresses).  POSIX sh only, so both shells run it unchanged.  It works in
# /tmp/battery and needs the busybox applets as /bin/NAME (made below).
# Process substitution is bash-only: it runs when BASH_VERSION is set.

set -u
B=/bin/busybox
for a in awk cat cmp cut diff find grep gunzip gzip head ln ls mkdir rm sed seq sh \
    sort tail tar tr true false uniq wc xargs yes; do
    [ -e /bin/$a ] || $B ln -s $B /bin/$a
done
PATH=/bin
export PATH

echo "== echo and printf"
echo plain words
printf '%s|%5d|%-4s|%x|%o\n' str 42 ab 255 8
printf '%s\n' one two three
echo "quoted  spaces" 'single $HOME' "tab	in"

echo "== variables"
v=hello
echo "${v} ${#v} ${v%lo} ${v#he} ${unset_var:-default} ${v:+set}"
n=0; : "${n:=9}"; echo "n=$n"
set -- a b "c d"; echo "args=$# first=$1 last=$3"
for arg in "$@"; do echo "arg<$arg>"; done
IFS=: read -r x y z <<EOF
1:2:3
EOF
echo "read $x $y $z"

echo "== arithmetic"
echo $((3 + 4 * 5)) $((17 / 5)) $((17 % 5)) $((1 << 10)) $((-7 + 2)) $(( (2+3) * (4-1) ))
i=10; i=$((i * 2 + 1)); echo "i=$i"
echo $((0x1f)) $((010)) $((5 > 3)) $((5 == 4))

echo "== loops"
i=0; while [ $i -lt 5 ]; do printf '%s ' $i; i=$((i + 1)); done; echo
for w in alpha beta gamma; do printf '[%s]' "$w"; done; echo
i=0; until [ $i -ge 3 ]; do i=$((i + 1)); done; echo "until $i"
for i in 1 2 3 4 5 6; do
    [ $i -eq 2 ] && continue
    [ $i -eq 5 ] && break
    printf '%s,' $i
done; echo
case "file.tar.gz" in *.gz) echo "case gz";; *) echo "case other";; esac

echo "== functions"
greet() { echo "hi $1 ($#)"; return 3; }
greet you extra; echo "status $?"
fact() { if [ "$1" -le 1 ]; then echo 1; else echo $(( $1 * $(fact $(( $1 - 1 ))) )); fi; }
echo "fact 10 = $(fact 10)"
counter=0; bump() { counter=$((counter + 1)); }; bump; bump; echo "counter $counter"

echo "== pipes"
printf 'c\nb\na\nb\n' | sort | uniq -c | sed 's/^ *//'
echo "one two three" | tr ' ' '\n' | wc -l | tr -d ' '
seq 1 100 | awk '{ s += $1 } END { print "sum", s }'
seq 1 20 | grep -v 1 | head -n 4 | tr '\n' ' '; echo
! false | false; echo "negated $?"

echo "== redirections"
rm -rf /tmp/battery; mkdir -p /tmp/battery; cd /tmp/battery
echo first > f.txt; echo second >> f.txt; cat < f.txt
ls nosuchfile 2> err.txt; echo "ls status $?"; [ -s err.txt ] && echo "stderr captured"
{ echo to-stdout; echo to-stderr >&2; } 2>&1 | sort
exec 3> fd3.txt; echo via-fd3 >&3; exec 3>&-; cat fd3.txt
cat f.txt nosuch 2>/dev/null | wc -l | tr -d ' '

echo "== here-docs"
name=world
cat <<EOF
hello $name
  indented $((1 + 1))
EOF
cat <<'EOF'
literal $name $(echo no)
EOF
tr a-z A-Z <<EOF
upper me
EOF

echo "== subshells and command substitution"
x=outer; (x=inner; echo "in $x"); echo "out $x"
(cd /; pwd); pwd
echo "nested $(echo "a $(echo b $(echo c))")"
lines=$(printf 'l1\nl2\nl3\n'); echo "$lines" | wc -l | tr -d ' '
echo "backticks `echo ok`"

echo "== exit statuses"
true; echo "true $?"
false; echo "false $?"
(exit 42); echo "exit $?"
sh_status=$(/bin/busybox sh -c 'exit 7'; echo $?); echo "child $sh_status"
true && echo "and ok"; false || echo "or ok"
if grep -q second f.txt; then echo "grep found"; fi
/nonexistent/cmd 2>/dev/null; echo "missing $?"

echo "== traps"
( trap 'echo "exit trap ran"' EXIT; echo "body" )
( trap 'echo "got USR1"' USR1; sh -c 'kill -USR1 $PPID'; echo "after kill" )
( trap 'echo "term trapped"; exit 5' TERM; sh -c 'kill -TERM $PPID'; echo "not reached?" ); echo "term status $?"

echo "== background jobs and wait"
( echo job-a > a.out ) &
( echo job-b > b.out ) &
wait
cat a.out b.out
sh -c 'exit 3' & p=$!; wait $p; echo "waited $?"
for k in 1 2 3 4; do ( seq 1 $((k * 100)) | wc -l | tr -d ' ' > bg$k.out ) & done; wait
cat bg1.out bg2.out bg3.out bg4.out | tr '\n' ' '; echo

echo "== files: find, sort, sed, awk, grep, wc"
mkdir -p tree/a/b tree/c
for f in tree/one.txt tree/a/two.txt tree/a/b/three.txt tree/c/four.log; do
    echo "content of $f" > $f
done
find tree -type f | sort
find tree -name '*.txt' | wc -l | tr -d ' '
find tree -type d | sort | tr '\n' ' '; echo
seq 1 10 > nums; sed -n '3,5p' nums | tr '\n' ' '; echo
sed -i 's/^1$/one/; s/^10$/ten/' nums; head -n 1 nums; tail -n 1 nums
printf 'b 2\na 1\nc 3\n' | sort -k2 -n | awk '{ print $1 }' | tr '\n' ' '; echo
awk -F: 'BEGIN { OFS="-" } { print $2, $1 }' <<EOF
x:1
y:2
EOF
grep -c content tree/a/two.txt
grep -rl content tree | sort
wc -c < tree/one.txt | tr -d ' '
printf 'w1 w2\nw3\n' | wc -w | tr -d ' '
seq 1 50 | xargs -n 10 echo | wc -l | tr -d ' '

echo "== tar and gzip round trips"
tar cf tree.tar tree
mkdir out; (cd out && tar xf ../tree.tar)
find out -type f | sort
cat out/tree/a/b/three.txt
seq 1 2000 > big.txt
gzip -c big.txt > big.txt.gz
gunzip -c big.txt.gz | wc -l | tr -d ' '
gunzip -c big.txt.gz | cmp -s - big.txt 2>/dev/null; echo "cmp $?"
gunzip -c big.txt.gz | tail -n 1
tar czf tree.tgz tree; mkdir out2; tar xzf tree.tgz -C out2; find out2 -type f | wc -l | tr -d ' '

echo "== SIGPIPE ends a writer"
yes | head -n 3
yes x | head -c 5; echo
echo "== /dev/fd"
echo through-dev-fd | cat /dev/fd/0
echo to-stdout > /dev/stdout
if [ -n "${BASH_VERSION:-}" ]; then
    diff <(echo a; echo b) <(echo a; echo b) && echo "diff same"
    diff <(echo a) <(echo c) > /dev/null; echo "diff status $?"
else
    echo "diff same"; echo "diff status 1"
fi
cd /; rm -rf /tmp/battery
echo "== done"
