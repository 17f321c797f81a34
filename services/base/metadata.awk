# metadata.awk - write a LinuxKit-style metadata tree (JSON) out as files:
#   awk -v root=/run/config -f metadata.awk < user-data
# Each top-level key names a node: {"content": "...", "perm": "0600"} is a file,
# {"entries": {...}, "perm": "0755"} a directory; other keys in a node are ignored.
#
# The image only has busybox and the tests also use mawk and gawk, so this is
# plain POSIX awk: no gawk extensions, no regex intervals (old mawk lacks them),
# and only global arrays (busybox has had bugs with local ones). The document is
# parsed and validated in full before anything is written, so a bad one leaves
# root untouched. Limitations: \u0000 is rejected (busybox strings end at NUL),
# objects may not repeat a key, nesting is capped at 64, and error offsets count
# characters under gawk in a UTF-8 locale but bytes elsewhere.

BEGIN {
	if (root == "") die("root is not set (use -v root=DIR)")
	# gawk in a UTF-8 locale makes %c emit a whole encoded code point; the
	# others emit one byte, so there \u escapes are encoded by hand.
	wide_c = sprintf("%c", 8364) != sprintf("%c", 172)
	ctl = "[" sprintf("%c", 1) "-" sprintf("%c", 31) "]"  # must be escaped in JSON
	NUMBER = "^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?$"
	HEX = "0123456789abcdef"
	ESC["\""] = "\""; ESC["/"] = "/"; ESC["n"] = "\n"; ESC["r"] = "\r"; ESC["t"] = "\t"
	ESC["b"] = sprintf("%c", 8); ESC["f"] = sprintf("%c", 12)
}

{ L[NR] = (NR > 1 ? "\n" : "") $0 }

END {
	if (failed) exit 1  # die() in BEGIN still runs END
	doc = join(L, 1, NR); eof = length(doc)
	lex()
	tp = 1; top = value(0)
	if (tp <= nt) perr(tp, "unexpected data after the document")
	if (kind[top] != "object") die("top-level value must be an object, not " kind[top])
	walk(top, "")
	write_all()
}

function die(msg) {  # via cat: /dev/stderr may not exist this early in boot
	printf "metadata: %s\n", msg | "cat 1>&2"; close("cat 1>&2")
	failed = 1; exit 1
}
function perr_at(off, msg) { die("invalid JSON at offset " off ": " msg) }
function perr(i, msg) { perr_at(i > nt ? eof : to[i], i > nt ? "unexpected end of input" : msg) }

# ---- lexer: tokens tt[i] ("s", "lit" or the punctuation), tv[i], to[i] (offset from 0)
# Splitting on '"' puts odd pieces outside strings and even pieces inside, except
# that a piece ending in an odd run of backslashes had its quote escaped and the
# string goes on. Runs of text are copied whole, never char by char: substr() is
# O(length) in busybox, and growing a string by appending is quadratic in
# mawk and busybox, hence CH[] and join().
function lex(    n, i, off, start, k) {
	n = split(doc, P, /"/)
	for (i = 1; i <= n; i++) {
		lex_plain(P[i], off); off += length(P[i]) + 1
		if (++i > n) break
		start = off - 1; nch = 0
		for (;;) {
			if (i == n) perr_at(start, "unterminated string")  # no closing quote
			k = match(P[i], /\\+$/) ? RLENGTH % 2 : 0
			decode(k ? substr(P[i], 1, length(P[i]) - 1) : P[i], off)
			off += length(P[i]) + 1
			if (!k) break
			CH[++nch] = "\""; i++
		}
		token("s", join(CH, 1, nch), start)
	}
}
function lex_plain(o, off,    j, len, c) {
	len = length(o)
	for (j = 1; j <= len; j++) {
		c = substr(o, j, 1)
		if (c ~ /[ \t\n\r]/) continue
		if (index("{}[]:,", c)) token(c, c, off + j - 1)
		else if (match(substr(o, j), /^[-+.0-9A-Za-z]+/)) {
			token("lit", substr(o, j, RLENGTH), off + j - 1)  # checked by value()
			j += RLENGTH - 1
		} else perr_at(off + j - 1, "unexpected character '" c "'")
	}
}
function token(type, val, off) { tt[++nt] = type; tv[nt] = val; to[nt] = off }

# Decode a quote-free stretch of string body at offset off into CH[]. Split on
# backslashes, every piece after the first starts with an escape letter, and an
# empty piece is the first half of "\\".
function decode(raw, off,    n, i, s, c, cp, lo) {
	if (match(raw, ctl)) perr_at(off + RSTART - 1, "control character in string")
	n = split(raw, S, /\\/)
	CH[++nch] = S[1]; off += length(S[1])  # off: the backslash before S[2]
	for (i = 2; i <= n; i++) {
		s = S[i]; c = substr(s, 1, 1)
		if (s == "" && i < n) { CH[++nch] = "\\" S[++i]; off += 2 + length(S[i]); continue }
		if (c == "u") {
			cp = hex4(substr(s, 2, 4), off)
			if (cp >= 56320 && cp < 57344) perr_at(off, "unpaired surrogate")
			if (cp >= 55296 && cp < 56320) {  # high surrogate: the low half must follow at once
				lo = (length(s) == 5 && S[i + 1] ~ /^u/) ? hex4(substr(S[i + 1], 2, 4), off + 6) : 0
				if (lo < 56320 || lo >= 57344) perr_at(off, "unpaired surrogate")
				cp = 65536 + (cp - 55296) * 1024 + (lo - 56320)
				off += 6; s = S[++i]
			}
			if (cp == 0) perr_at(off, "\\u0000 is not supported")
			CH[++nch] = utf8(cp) substr(s, 6)
		} else if (c != "" && (c in ESC)) CH[++nch] = ESC[c] substr(s, 2)
		else perr_at(off, "invalid escape '\\" c "'")
		off += 1 + length(s)
	}
}
function hex4(h, off,    i, v) {
	if (h !~ /^[0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f][0-9A-Fa-f]$/) perr_at(off, "invalid \\u escape")
	for (i = 1; i <= 4; i++) v = v * 16 + index(HEX, tolower(substr(h, i, 1))) - 1
	return v
}
function utf8(cp) {
	if (cp < 128 || wide_c) return sprintf("%c", cp)
	if (cp < 2048) return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
	if (cp < 65536) return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
	return sprintf("%c%c%c%c", 240 + int(cp / 262144), 128 + int(cp / 4096) % 64, 128 + int(cp / 64) % 64, 128 + cp % 64)
}
function join(A, lo, hi,    mid) {  # pairwise, to copy each byte O(log n) times
	if (lo >= hi) return lo == hi ? A[lo] : ""
	mid = int((lo + hi) / 2)
	return join(A, lo, mid) join(A, mid + 1, hi)
}

# ---- parser: kind[v] is object/array/string/number/true/false/null, sval[v] a
# string, memb[v, key] an object member, key[v, 1..nkey[v]] its keys in order.
# Array elements are checked but not kept: arrays only occur in ignored keys.
function value(depth,    t, v, name) {
	if (tp > nt || depth > 64) perr(tp, "nested too deeply")
	t = tt[tp]; v = ++nv
	if (t == "{") {
		kind[v] = "object"
		if (tt[tp + 1] == "}") { tp += 2; return v }
		do {
			if (tt[++tp] != "s") perr(tp, "expected a string key")
			name = tv[tp]
			if ((v, name) in memb) perr(tp, "duplicate key \"" name "\"")
			tp++; expect(":")
			memb[v, name] = value(depth + 1); key[v, ++nkey[v]] = name
		} while (tt[tp] == ",")
		expect("}")
	} else if (t == "[") {
		kind[v] = "array"
		if (tt[tp + 1] == "]") { tp += 2; return v }
		do { tp++; value(depth + 1) } while (tt[tp] == ",")
		expect("]")
	} else {
		if (t == "s") { kind[v] = "string"; sval[v] = tv[tp] }
		else if (t != "lit") perr(tp, "unexpected '" t "'")
		else if (tv[tp] ~ NUMBER) kind[v] = "number"
		else if (tv[tp] ~ /^(true|false|null)$/) kind[v] = tv[tp]
		else perr(tp, "invalid literal '" tv[tp] "'")
		tp++
	}
	return v
}
function expect(c) { if (tt[tp] != c) perr(tp, "expected '" c "'"); tp++ }

# ---- metadata tree: validate directory object obj (path dir, relative to root)
# and queue the work: dirs in dpath/dperm, files in fpath/fdata/fperm.
function walk(obj, dir,    k, name, node, path, c, e, p) {
	for (k = 1; k <= nkey[obj]; k++) {
		name = key[obj, k]; node = memb[obj, name]; path = (dir == "" ? "" : dir "/") name
		if (name == "" || name == "." || name == ".." || index(name, "/"))
			die("invalid name \"" name "\" in " (dir == "" ? "top level" : dir))
		if (kind[node] != "object") die(path ": must be an object, not " kind[node])
		c = ((node, "content") in memb) ? memb[node, "content"] : 0
		e = ((node, "entries") in memb) ? memb[node, "entries"] : 0
		p = ((node, "perm") in memb) ? memb[node, "perm"] : 0
		if (c && e) die(path ": has both \"content\" and \"entries\"")
		if (!c && !e) die(path ": has neither \"content\" nor \"entries\"")
		if (p && !(kind[p] == "string" && sval[p] ~ /^0?[0-7][0-7][0-7][0-7]?$/))
			die(path ": invalid perm (want an octal string like \"0644\")")
		if (c) {
			if (kind[c] != "string") die(path ": \"content\" must be a string, not " kind[c])
			fpath[++nf] = path; fdata[nf] = sval[c]; fperm[nf] = p ? sval[p] : "0644"
		} else {
			if (kind[e] != "object") die(path ": \"entries\" must be an object, not " kind[e])
			dpath[++nd] = path; dperm[nd] = p ? sval[p] : "0755"
			walk(e, path)
		}
	}
}

# ---- writing
function write_all(    i, f) {
	# Keep root private while writing: modes are applied after the content, and
	# no file should be readable meanwhile with a looser mode than asked for.
	run("mkdir -p -- " q(root) " && chmod 0700 -- " q(root))
	for (i = 1; i <= nd; i++) run("mkdir -p -- " q(root "/" dpath[i]))
	for (i = 1; i <= nf; i++) {
		f = root "/" fpath[i]
		printf "%s", fdata[i] > f; close(f)
		run("chmod " fperm[i] " -- " q(f))
	}
	# Deepest first, so a read-only directory can't block its children.
	for (i = nd; i >= 1; i--) run("chmod " dperm[i] " -- " q(root "/" dpath[i]))
	run("chmod 0755 -- " q(root))
}
function run(cmd) { if (system(cmd) != 0) die("command failed: " cmd) }

# Single-quote for sh, ' becoming '\''. Not gsub(): what a backslash in its
# replacement means differs between awks.
function q(s,    n, i, r) {
	n = split(s, Q, /'/); r = Q[1]
	for (i = 2; i <= n; i++) r = r "'\\''" Q[i]
	return "'" r "'"
}
