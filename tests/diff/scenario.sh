# scenario.sh -- the etcdctl scenario of the differential test (sourced by run_diff.sh).
#
# Each `step NAME ARGS...` runs `etcdctl ARGS...` against the server under test and is one
# check: its stdout, stderr and exit status must match the other server's after
# normalisation. Step names are unique; the part before the first dot groups them.
#   step NAME ARGS...            stdin is /dev/null
#   step_txt NAME TEXT ARGS...   TEXT is stdin (txn scripts)
#   step_in NAME FILE ARGS...    FILE is stdin (large values)
#   rev_of NAME / jget NAME PATH read a value out of an earlier step's JSON output. Revisions
#                                differ per server, so a step that needs one takes it from
#                                this server's own earlier output, never a constant.
# $SCRATCH is a per-server scratch directory (also the working directory).
# Adding steps: append them to a section, or add a section; keep writes before the
# compaction section in mind (it compacts up to a revision taken from the run).
# Not yet covered because etcd-fdb answers UNIMPLEMENTED: watch, lease, auth, snapshot,
# member add/remove/update, move-leader.

# ---- empty store ------------------------------------------------------------------------
step empty.get              get foo -w json
R0=$(rev_of empty.get)      # the revision of the empty store
step empty.get-all          get "" --prefix -w json
step empty.count            get "" --from-key --limit=1 -w json
step empty.get-simple       get foo

# ---- put --------------------------------------------------------------------------------
step put.a1                 put a 1 -w json
R_A1=$(rev_of put.a1)
step put.b                  put b 2 -w json
R_B=$(rev_of put.b)
step put.c                  put c 3 -w json
step put.d                  put d 4 -w json
step put.foo                put foo v-foo -w json
step put.foo-slash-bar      put foo/bar v-bar -w json
step put.foo-slash-baz      put foo/baz v-baz -w json
step put.fop                put fop v-fop -w json
step put.a2                 put a 11 -w json
R_A2=$(rev_of put.a2)
step put.a3-prev-kv         put a 111 --prev-kv -w json
step put.e-prev-kv-new      put e 5 --prev-kv -w json
step put.z-simple           put z last
step put.z-simple-prev-kv   put z last2 --prev-kv
step put.observe-z          get z -w json
step put.b-same-value       put b 2 -w json
step put.a-ignore-value     put a --ignore-value -w json
step put.ignore-value-missing put nokey --ignore-value -w json
step put.ignore-value-missing-simple put nokey --ignore-value
step put.ignore-lease       put a 111 --ignore-lease -w json
step put.ignore-lease-missing put nokey v --ignore-lease -w json
step put.empty-key          put "" v
step put.empty-key-json     put "" v -w json
step put.empty-value        put emptyval "" -w json
step put.unicode            put "ключ/🔑" "значение ✓" -w json
step put.binary             put $'\x01\xfe\xff' $'\x02\x7f\x80' -w json
step put.space              put "a b" "c d" -w json
step put.dash-value         put dashval -- -v -w json
step put.lease-missing      put leased v --lease=1234abcd -w json
step_txt put.value-stdin "value from stdin" put fromstdin -w json
head -c 100000 /dev/zero | tr '\0' 'm' >"$SCRATCH/v100k"
step put.large-100k         put large100k "$(cat "$SCRATCH/v100k")" -w json
seq 1 300000 | tr -d '\n' | head -c 1048576 >"$SCRATCH/v1m"
step_in put.large-1m "$SCRATCH/v1m" put large1m -w json
head -c 1600000 /dev/zero | tr '\0' 't' >"$SCRATCH/v1600k"
step_in put.too-large "$SCRATCH/v1600k" put toolarge -w json
step put.a-fields           put a 1111 -w fields
step put.a-again            put a 111 -w json

# ---- get --------------------------------------------------------------------------------
step get.single             get a -w json
step get.single-simple      get a
step get.missing            get nope -w json
step get.missing-simple     get nope
step get.range              get a d -w json
step get.range-simple       get a d
step get.range-reversed     get d a -w json
step get.range-same         get a a -w json
step get.prefix             get foo --prefix -w json
step get.prefix-slash       get foo/ --prefix -w json
step get.prefix-keys-only   get foo --prefix --keys-only -w json
step get.prefix-keys-only-simple get foo --prefix --keys-only
step get.prefix-count       get foo --prefix --limit=1 --keys-only -w json
step get.all                get "" --prefix -w json
step get.all-keys-simple    get "" --prefix --keys-only
step get.from-key           get c --from-key -w json
step get.from-key-empty     get "" --from-key --keys-only -w json
step get.from-key-simple    get fo --from-key --keys-only
step get.limit              get "" --prefix --limit=2 -w json
step get.limit-all          get foo --prefix --limit=4 -w json
step get.limit-more         get foo --prefix --limit=3 -w json
step get.limit-keys-only    get "" --from-key --limit=3 --keys-only -w json
# Sorting: etcd sorts with Go's unstable sort.Sort, so the order of equal sort values is
# unspecified; the s/ keys have distinct create, mod, version and value.
step sort.put-s3            put s/3 a -w json
step sort.put-s1            put s/1 d -w json
step sort.put-s4            put s/4 c -w json
step sort.put-s2            put s/2 b -w json
step sort.put-s4-v2         put s/4 e -w json
step sort.put-s1-v2         put s/1 f -w json
step sort.put-s1-v3         put s/1 g -w json
step sort.put-s2-v2         put s/2 h -w json
step sort.put-s1-v4         put s/1 i -w json
step sort.put-s2-v3         put s/2 j -w json
step sort.put-s4-v3         put s/4 k -w json
step sort.put-s2-v4         put s/2 l -w json
step sort.put-s2-v5         put s/2 m -w json
for target in KEY CREATE MODIFY VERSION VALUE; do
    for order in ASCEND DESCEND; do
        step "sort.$target-$order" get s/ --prefix --sort-by=$target --order=$order -w json
    done
done
step sort.MODIFY-DESCEND-limit  get s/ --prefix --sort-by=MODIFY --order=DESCEND --limit=2 -w json
step sort.VERSION-ASCEND-limit  get s/ --prefix --sort-by=VERSION --order=ASCEND --limit=3 -w json
step sort.VALUE-DESCEND-limit   get s/ --prefix --sort-by=VALUE --order=DESCEND --limit=1 --keys-only -w json
step sort.order-only-DESCEND    get s/ --prefix --order=DESCEND --keys-only -w json
step sort.order-only-simple     get s/ --prefix --order=DESCEND
step sort.sort-only-VERSION     get s/ --prefix --sort-by=VERSION --keys-only -w json
step sort.KEY-DESCEND-all       get "" --from-key --sort-by=KEY --order=DESCEND --keys-only -w json
step sort.KEY-DESCEND-range     get a e --sort-by=KEY --order=DESCEND --limit=3 -w json
step sort.range-rev             get s/ --prefix --sort-by=VERSION --order=DESCEND --rev="$(rev_of sort.put-s2-v3)" -w json
step get.print-value-only   get foo --prefix --print-value-only
step get.consistency-s      get a --consistency=s -w json
step get.fields             get a -w fields
step get.fields-prefix      get foo/ --prefix -w fields
step get.hex                get a --hex
step get.hex-json           get $'\x01\xfe\xff' --hex -w json
step get.unicode            get "ключ/🔑"
step get.binary-simple      get $'\x01\xfe\xff'
step get.empty-value        get emptyval -w json
step get.empty-key          get ""
step get.large-100k         get large100k -w json
step get.large-1m           get large1m --print-value-only
step get.large-keys         get large --prefix --keys-only -w json
step get.toolarge-missing   get toolarge -w json
step get.rev-empty          get a --rev="$R0" -w json
step get.rev-a1             get a --rev="$R_A1" -w json
step get.rev-a1-simple      get a --rev="$R_A1"
step get.rev-a2             get a --rev="$R_A2" -w json
step get.rev-b-all          get "" --prefix --rev="$R_B" -w json
step get.rev-b-count        get "" --prefix --rev="$R_B" --limit=1 --keys-only -w json
step get.rev-zero           get a --rev=0 -w json
CUR=$(rev_of get.rev-zero)
step get.rev-current        get a --rev="$CUR" -w json
step get.rev-future-1       get a --rev="$((CUR + 1))" -w json
step get.rev-future-far     get a --rev="$((CUR + 1000000000000))"
step get.rev-negative       get a --rev=-1 -w json

# ---- delete -----------------------------------------------------------------------------
step del.single             del c -w json
step del.missing            del nope -w json
step del.missing-simple     del nope
step del.missing-range      del nope1 nope9 -w json
step del.prev-kv            del b --prev-kv -w json
step del.range              del d f -w json
step del.prefix-prev-kv     del foo/ --prefix --prev-kv -w json
step del.from-key-simple    del y --from-key --prev-kv
step del.observe-1          get y --from-key -w json
step del.empty-key          del ""
step del.get-all            get "" --prefix --keys-only -w json
step del.get-deleted-at-rev get b --rev="$R_B" -w json
step del.recreate-c         put c 33 -w json
step del.get-recreated      get c -w json
step del.again-simple       del c
step del.observe-2          get c -w json
step del.again-put-simple   put c 333
step del.observe-3          get c -w json
step del.prev-kv-simple     del c --prev-kv
step del.after-count        get "" --from-key --limit=1 --keys-only -w json

# ---- txn --------------------------------------------------------------------------------
step_txt txn.value-success 'value("a") = "111"

put a t1
get a

put a f1
' txn -w json
step_txt txn.value-failure 'value("a") = "nope"

put a t2

put a f2
get a
' txn -w json
step_txt txn.value-success-simple 'value("a") = "f2"

put t-simple 1
get a --prefix
del m --prefix --prev-kv

put never 1
' txn
step txn.observe-1          get t-simple -w json
step_txt txn.value-failure-simple 'value("a") = "zzz"

put never 1

get a
' txn
step get.a-before-compares  get a -w json
A_MOD=$(jget get.a-before-compares kvs.0.mod_revision)
A_CREATE=$(jget get.a-before-compares kvs.0.create_revision)
step_txt txn.mod-equal "mod(\"a\") = \"$A_MOD\"

put m1 eq

put m1 ne
" txn -w json
step_txt txn.mod-less "mod(\"a\") < \"$A_MOD\"

put m2 lt

put m2 ge
" txn -w json
step_txt txn.mod-greater "mod(\"a\") > \"$R_A1\"

put m3 gt

put m3 le
" txn -w json
step_txt txn.create-equal "create(\"a\") = \"$R_A1\"

get a

" txn -w json
step_txt txn.create-missing 'create("missing") = "0"

put m4 created

' txn -w json
step_txt txn.version-greater 'version("a") > "3"

get a --keys-only

get m1
' txn -w json
step_txt txn.version-missing 'version("missing") = "0"

put m5 v0

' txn -w json
step_txt txn.value-missing 'value("missing") = ""

put m6 yes

put m6 no
' txn -w json
step_txt txn.value-not-equal 'value("a") != "x"

put m7 ne

' txn -w json
step_txt txn.value-less 'value("a") < "g"

put m8 lt

put m8 ge
' txn -w json
step_txt txn.multi-compare-one-false 'value("a") = "f2"
version("a") = "999"

put m9 all

get a
get m1
' txn -w json
step_txt txn.empty '
' txn -w json
step_txt txn.empty-simple '
' txn
step_txt txn.no-compare-put '
put n1 1
put n2 2

' txn -w json
step_txt txn.readonly-success 'value("n1") = "1"

get n --prefix
get n1 --keys-only

' txn -w json
step_txt txn.del-prev-kv 'value("n2") = "2"

del n --prefix --prev-kv

' txn -w json
step_txt txn.put-prev-kv '
put m1 again --prev-kv

' txn -w json
step_txt txn.put-then-get-same '
put pg 1
get pg

' txn -w json
step_txt txn.get-put-get '
get a
put a gpg
get a
' txn -w json
step_txt txn.del-then-get '
get m1
del m1 --prev-kv
get m1
get m --prefix --keys-only
' txn -w json
step_txt txn.dup-put '
put dup 1
put dup 2

' txn -w json
step_txt txn.dup-put-failure-branch 'value("a") = "nope"

put ok 1

put dup 1
put dup 2
' txn -w json
step_txt txn.put-del-overlap '
put m1 x
del m --prefix

' txn -w json
step_txt txn.del-del-overlap '
del m1
del m --prefix

' txn -w json
step_txt txn.empty-key-put '
put "" x

' txn -w json
step_txt txn.ignore-value '
put m2 --ignore-value

' txn -w json
step_txt txn.ignore-value-missing '
put nothere --ignore-value

' txn -w json
ops=""
for i in $(seq 1 129); do ops="${ops}put many$i x
"; done
step_txt txn.too-many-ops "
$ops" txn -w json
ops=""
for i in $(seq 1 128); do ops="${ops}put many$i x
"; done
step_txt txn.max-ops "
$ops" txn -w json
step txn.after-count        get "" --from-key --limit=1 --keys-only -w json

# ---- many keys (more than one store read batch; a prefix of 0xff bytes) ----------------
for t in $(seq 0 11); do
    ops=""
    for i in $(seq $((t * 125 + 1)) $((t * 125 + 125))); do
        ops="${ops}put bulk/$(printf '%04d' "$i") v$i
"
    done
    step_txt "bulk.txn-$t" "
$ops" txn
done
step bulk.keys              get bulk/ --prefix --keys-only -w json
R_BULK=$(rev_of bulk.keys)
step bulk.limit-1000        get bulk/ --prefix --limit=1000 --keys-only -w json
step bulk.limit-1001        get bulk/ --prefix --limit=1001 --keys-only -w json
step bulk.range-mid         get bulk/0990 bulk/1010 -w json
step bulk.from-key-limit    get bulk/1498 --from-key --limit=5 --keys-only -w json
step bulk.sort-desc-limit   get bulk/ --prefix --sort-by=KEY --order=DESCEND --limit=3 -w json
step bulk.sort-value-limit  get bulk/ --prefix --sort-by=VALUE --order=DESCEND --limit=3 -w json
step bulk.rev-early         get bulk/ --prefix --rev="$(rev_of bulk.limit-1000)" --limit=2 -w json
step bulk.del-range         del bulk/0100 bulk/1200 -w json
step bulk.del-prefix-prev   del bulk/ --prefix --prev-kv -w json
step bulk.after             get bulk/ --prefix -w json
step bulk.rev-before-del    get bulk/ --prefix --rev="$R_BULK" --limit=3 -w json
step bulk.put-ff            put $'\xff\xff' ff -w json
step bulk.put-ff0           put $'\xff\x00' ff0 -w json
step bulk.prefix-ff         get $'\xff' --prefix -w json
step bulk.prefix-ffff       get $'\xff\xff' --prefix -w json
step bulk.from-key-ff       get $'\xff' --from-key --keys-only -w json
step bulk.del-prefix-ff     del $'\xff' --prefix -w json

# ---- compaction -------------------------------------------------------------------------
step compact.before-mid     get "" --prefix --keys-only -w json
R_MID=$A_MOD
step compact.mid            compact "$R_MID"
step compact.get-older      get a --rev="$R_A1"
step compact.get-older-json get a --rev="$R_A1" -w json
step compact.get-rev-empty  get a --rev="$R0"
step compact.get-at-compact get a --rev="$R_MID" -w json
step compact.get-current    get "" --prefix --limit=1 --keys-only -w json
step compact.again          compact "$R_MID"
step compact.older          compact "$R_A1"
CUR=$(rev_of compact.get-current)
step compact.future         compact "$((CUR + 1000000000000))"
step compact.put-after      put after-compact 1 -w json
R_LAST=$(rev_of compact.put-after)
step compact.physical       compact "$R_LAST" --physical
step compact.get-last       get after-compact --rev="$R_LAST" -w json
step compact.get-before-last get a --rev="$((R_LAST - 1))" -w json
step compact.current        compact "$R_LAST"
step compact.bulk-gone      get bulk/ --prefix --rev="$R_BULK" -w json
step_txt compact.txn-after "create(\"a\") = \"$R_A1\"

put after-compact 2 --prev-kv
get a --keys-only
" txn -w json

# ---- maintenance and cluster ------------------------------------------------------------
step maint.status-json      endpoint status -w json
step maint.health           endpoint health
step maint.health-json      endpoint health -w json
step maint.hashkv-json      endpoint hashkv -w json
step maint.member-list-json member list -w json
step maint.member-list      member list
step maint.alarm-list       alarm list
step maint.defrag           defrag
step maint.final-all        get "" --prefix --keys-only -w json
