using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// libnbd from Python (Debian's python3-libnbd, for /usr/bin/python3) driving the request mix against <c>qed serve</c>
/// (NBD.md 7.2 #18-#22): pread, pwrite with FUA, zero with NO_HOLE and FAST_ZERO, trim, cache, flush, block status
/// with REQ_ONE, multi-conn visibility between two handles, requests past the end with strict mode off, and writes to a
/// read-only export. The same script runs against qemu-nbd with the same arguments; its answers are printed beside
/// ours, and ours are checked against the spec (EPERM read-only, ENOSPC for writes past the end, where qemu-nbd 7.2
/// answers EINVAL to both).
/// </summary>
public sealed class LibnbdPythonInteropTests(ITestOutputHelper output)
{
    // Own script: each step records "ok", a check's truth value or the errno name libnbd reported; printed as JSON.
    private const string Script = """
        import errno, json, sys
        import nbd

        uri, ro_uri = sys.argv[1], sys.argv[2]
        MiB = 1 << 20
        out = {}

        def attempt(name, fn):
            try:
                r = fn()
                out[name] = 'ok' if r is None else r
            except nbd.Error as e:
                out[name] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else e.string

        h = nbd.NBD()
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.connect_uri(uri)
        size = h.get_size()
        out['size'] = size
        out['can'] = {n: bool(getattr(h, 'can_' + n)()) for n in
                      ['flush', 'fua', 'trim', 'zero', 'fast_zero', 'cache', 'multi_conn', 'df']}
        out['base_allocation'] = bool(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))

        data = bytes((i * 7 + 3) & 255 for i in range(64 * 1024))
        attempt('pwrite_fua', lambda: h.pwrite(data, 1 * MiB, nbd.CMD_FLAG_FUA))
        attempt('pread_back', lambda: h.pread(len(data), 1 * MiB) == data)

        # zero with NO_HOLE from 4 KiB into a cluster over data: head and tail stay.
        attempt('pwrite_3m', lambda: h.pwrite(b'\x55' * (3 * MiB), 2 * MiB))
        attempt('zero_no_hole', lambda: h.zero(MiB + 4096, 2 * MiB + 4096, nbd.CMD_FLAG_NO_HOLE))
        attempt('zero_no_hole_reads', lambda: h.pread(4096, 2 * MiB) == b'\x55' * 4096
                and h.pread(MiB + 4096, 2 * MiB + 4096) == bytes(MiB + 4096)
                and h.pread(MiB - 8192, 4 * MiB + 8192) == b'\x55' * (MiB - 8192))
        # FAST_ZERO: success, or ENOTSUP at once; never EINVAL when advertised.
        attempt('pwrite_8m', lambda: h.pwrite(b'\x66' * (8 * MiB), 8 * MiB))
        attempt('fast_zero', lambda: h.zero(8 * MiB, 8 * MiB, nbd.CMD_FLAG_FAST_ZERO))
        attempt('fast_zero_reads', lambda: h.pread(8 * MiB, 8 * MiB) in (bytes(8 * MiB), b'\x66' * (8 * MiB)))
        attempt('trim', lambda: (h.pwrite(b'\xaa' * (128 * 1024), 20 * MiB), h.trim(128 * 1024, 20 * MiB))[1])
        attempt('cache', lambda: h.cache(MiB, 0))
        attempt('flush', lambda: h.flush())

        extents = []
        def collect(meta, offset, entries, err):
            extents.append([meta, offset, list(entries)])
            return 0
        attempt('block_status_req_one', lambda: h.block_status(MiB, 1 * MiB, collect, nbd.CMD_FLAG_REQ_ONE))
        out['req_one_extents'] = extents

        # Multi-conn: a write flushed on one handle is seen by another.
        h2 = nbd.NBD()
        h2.connect_uri(uri)
        attempt('multi_conn_write', lambda: h.pwrite(b'\xee' * 4096, 8192))
        attempt('multi_conn_flush', lambda: h.flush())
        attempt('multi_conn_visible', lambda: h2.pread(4096, 8192) == b'\xee' * 4096)
        h2.shutdown()

        # Requests past the end, strict mode off so that they reach the server; the connection lives on.
        h.set_strict_mode(0)
        attempt('read_past_end', lambda: h.pread(512, size))
        attempt('read_wrapping', lambda: h.pread(1024, (1 << 64) - 512))
        attempt('write_past_end', lambda: h.pwrite(b'x' * 512, size))
        attempt('zero_past_end', lambda: h.zero(512, size))
        attempt('trim_past_end', lambda: h.trim(512, size))
        attempt('alive_after_errors', lambda: h.pread(512, 0) == b'\x00' * 512)
        h.shutdown()

        # Read-only export: writes refused, connection kept.
        r = nbd.NBD()
        r.connect_uri(ro_uri)
        out['ro_is_read_only'] = bool(r.is_read_only())
        out['ro_can'] = {n: bool(getattr(r, 'can_' + n)()) for n in ['trim', 'zero', 'flush']}
        r.set_strict_mode(0)
        attempt('ro_pwrite', lambda: r.pwrite(b'x' * 512, 0))
        attempt('ro_zero', lambda: r.zero(512, 0))
        attempt('ro_trim', lambda: r.trim(512, 0))
        attempt('ro_alive', lambda: len(r.pread(512, 0)) == 512)
        attempt('ro_flush', lambda: r.flush())
        r.shutdown()
        print(json.dumps(out))
        """;

    [Fact]
    public async Task Request_mix_from_python_libnbd()
    {
        using var dir = new TempDirectory();
        string scriptPath = dir.File("mix.py");
        File.WriteAllText(scriptPath, Script);
        var answers = new Dictionary<NbdServerKind, JsonElement>();
        foreach (var kind in new[] { NbdServerKind.QemuNbd, NbdServerKind.Qed })
        {
            string name = NbdServerProcess.KindName(kind);
            string image = InteropImages.EmptyQed(dir.File(name), "disk.qed");
            string readOnlyImage = InteropImages.EmptyQed(dir.File(name), "ro.qed");
            await using var server = NbdServerProcess.Start(kind, dir.Path, "-t", "-e", "2", "-f", "qed", "-k", dir.File(name + ".sock"), image);
            await using var readOnly = NbdServerProcess.Start(kind, dir.Path, "-t", "-r", "-f", "qed", "-k", dir.File(name + "-ro.sock"), readOnlyImage);
            var run = InteropRun.Ok(server, InteropRun.SystemPython, scriptPath, server.Uri(), readOnly.Uri());
            answers[kind] = JsonDocument.Parse(run.StdOut).RootElement.Clone();
            Assert.False(server.HasExited, server.StdErr);
            Assert.False(readOnly.HasExited, readOnly.StdErr);
            await server.StopCleanlyAsync();
            await readOnly.StopCleanlyAsync();
            if (kind == NbdServerKind.Qed)
            {
                InteropImages.AssertChecksClean(image);
                InteropImages.AssertChecksClean(readOnlyImage);
            }
        }

        JsonElement ours = answers[NbdServerKind.Qed];
        JsonElement theirs = answers[NbdServerKind.QemuNbd];
        foreach (var property in ours.EnumerateObject())
        {
            string theirValue = theirs.TryGetProperty(property.Name, out var value) ? value.GetRawText() : "(absent)";
            output.WriteLine($"{property.Name,-22} qed {property.Value.GetRawText()}   qemu-nbd {theirValue}");
        }

        string Get(string name) => ours.GetProperty(name).ValueKind switch
        {
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => ours.GetProperty(name).ToString(),
        };
        Assert.Equal(InteropImages.Size, ours.GetProperty("size").GetInt64());
        Assert.True(ours.GetProperty("base_allocation").GetBoolean());
        foreach (string feature in new[] { "flush", "fua", "trim", "zero", "fast_zero", "cache", "multi_conn" })
        {
            Assert.True(ours.GetProperty("can").GetProperty(feature).GetBoolean(), $"can_{feature} not advertised");
        }
        foreach (string step in new[] { "pwrite_fua", "pwrite_3m", "zero_no_hole", "pwrite_8m", "trim", "cache", "flush", "block_status_req_one", "multi_conn_write", "multi_conn_flush", "ro_flush" })
        {
            Assert.Equal("ok", Get(step));
        }
        foreach (string check in new[] { "pread_back", "zero_no_hole_reads", "fast_zero_reads", "multi_conn_visible", "alive_after_errors", "ro_is_read_only", "ro_alive" })
        {
            Assert.True(Get(check) == "true", $"{check}: {Get(check)}");
        }
        Assert.True(Get("fast_zero") is "ok" or "ENOTSUP" or "EOPNOTSUPP", $"fast zero: {Get("fast_zero")}");

        // REQ_ONE: exactly one extent, not longer than asked, data at 1 MiB.
        var extents = ours.GetProperty("req_one_extents");
        Assert.Equal(1, extents.GetArrayLength());
        Assert.Equal("base:allocation", extents[0][0].GetString());
        Assert.Equal(1L << 20, extents[0][1].GetInt64());
        var entries = extents[0][2];
        Assert.Equal(2, entries.GetArrayLength());
        Assert.InRange(entries[0].GetInt64(), 1, 1L << 20);
        Assert.Equal(0, entries[1].GetInt64());

        // The spec's answers where qemu-nbd 7.2 says EINVAL.
        Assert.Equal("EINVAL", Get("read_past_end"));
        Assert.Equal("EINVAL", Get("read_wrapping"));
        Assert.Equal("ENOSPC", Get("write_past_end"));
        Assert.Equal("ENOSPC", Get("zero_past_end"));
        Assert.Equal("EINVAL", Get("trim_past_end"));
        Assert.Equal("EPERM", Get("ro_pwrite"));
        Assert.Equal("EPERM", Get("ro_zero"));
        Assert.Equal("EPERM", Get("ro_trim"));
        Assert.False(ours.GetProperty("ro_can").GetProperty("trim").GetBoolean());
        Assert.False(ours.GetProperty("ro_can").GetProperty("zero").GetBoolean());
    }
}
