using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// libnbd's <c>nbdinfo --list --json</c> against our server and against <c>qemu-nbd</c> serving a copy of the same
/// image with the same settings; the fields the handshake decides must agree, except where we differ on purpose.
/// And <c>nbdinfo</c> over TLS (<c>nbds+unix://</c>) with certificates made in the test.
/// </summary>
public sealed class NegotiationOracleTests(ITestOutputHelper output)
{
    private const string ExportName = "disk";
    private const string Description = "a test disk";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);

    // Fields both servers must answer alike. Deliberate differences, checked separately below:
    // - block_size_minimum: qemu-nbd says 512 for QED, we say 1 (the engine is byte-granular, read-modify-write inside);
    // - block_size_preferred: qemu-nbd says 4096, we say the cluster size (smaller writes into fresh clusters copy up);
    // - uri: names each server's own socket.
    private static readonly string[] s_sameFields =
    [
        "export-name", "description", "contexts", "is_rotational", "is_read_only", "can_cache", "can_df", "can_fast_zero",
        "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero", "block_size_maximum", "export-size",
    ];

    [Theory]
    [InlineData(true, false, 1)]
    [InlineData(false, true, 4)]
    public async Task Nbdinfo_sees_what_qemu_nbd_shows(bool readOnly, bool allocationDepth, int maxConnections)
    {
        using var dir = new TempDirectory();
        string image = NegotiationImages.Create(dir.Path);
        string copy = dir.File("copy.qed");
        File.Copy(image, copy);

        // --list goes through LIST, INFO and LIST_META_CONTEXT; without it nbdinfo takes INFO, then GO and a READ.
        JsonElement ours;
        JsonElement oursGo;
        await using (var server = NbdTestServer.Start(
            dir.Path,
            image,
            ExportName,
            readOnly,
            e => e with { Description = Description, AllocationDepth = allocationDepth },
            o => o with { MaxConnections = maxConnections }))
        {
            ours = Nbdinfo(dir.Path, "--list", server.Uri());
            oursGo = Nbdinfo(dir.Path, null, server.Uri(ExportName));
        }

        var arguments = new List<string> { "-f", "qed", "-t", "-x", ExportName, "-D", Description, "-e", maxConnections.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (readOnly)
        {
            arguments.Add("-r");
        }
        if (allocationDepth)
        {
            arguments.Add("-A");
        }
        JsonElement theirs;
        JsonElement theirsGo;
        string socketPath = dir.File("qemu.sock");
        using (var qemu = StartQemuNbd(socketPath, arguments, copy))
        {
            try
            {
                theirs = Nbdinfo(dir.Path, "--list", $"nbd+unix:///?socket={socketPath}");
                theirsGo = Nbdinfo(dir.Path, null, $"nbd+unix:///{ExportName}?socket={socketPath}");
            }
            finally
            {
                qemu.Kill();
                qemu.WaitForExit();
            }
        }

        Assert.Equal(s_sameFields.Length, CompareNbdinfo(theirs, ours));
        Assert.Equal(s_sameFields.Length, CompareNbdinfo(theirsGo, oursGo));
    }

    /// <summary>The fields both must answer alike, and the deliberate differences; returns the number of fields compared.</summary>
    private int CompareNbdinfo(JsonElement theirs, JsonElement ours)
    {
        Assert.Equal(theirs.GetProperty("protocol").GetString(), ours.GetProperty("protocol").GetString());
        Assert.Equal(theirs.GetProperty("structured").GetBoolean(), ours.GetProperty("structured").GetBoolean());
        var ourExport = Assert.Single(ours.GetProperty("exports").EnumerateArray().ToArray());
        var theirExport = Assert.Single(theirs.GetProperty("exports").EnumerateArray().ToArray());
        int compared = 0;
        foreach (string field in s_sameFields)
        {
            Assert.True(theirExport.TryGetProperty(field, out var expected), $"qemu-nbd's answer lacks {field}");
            Assert.True(ourExport.TryGetProperty(field, out var actual), $"our answer lacks {field}");
            output.WriteLine($"{field}: qemu-nbd {expected.GetRawText()}, ours {actual.GetRawText()}");
            Assert.True(JsonElement.DeepEquals(expected, actual), $"{field}: qemu-nbd says {expected.GetRawText()}, we say {actual.GetRawText()}");
            compared++;
        }

        Assert.Equal(512, theirExport.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(1, ourExport.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(4096, theirExport.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(NegotiationImages.ClusterSize, ourExport.GetProperty("block_size_preferred").GetInt32());
        return compared;
    }

    // libnbd in option mode (python3-libnbd, run by /usr/bin/python3): LIST, LIST_META_CONTEXT with wildcards and names,
    // SET_META_CONTEXT + INFO (opt_info with full info), INFO for an unknown export, ABORT. Prints one JSON object.
    private const string LibnbdProbe = """
import json, sys
import nbd

h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(sys.argv[1])
h.set_export_name("disk")
out = {}
exports = []
h.opt_list(lambda name, description: exports.append([name, description]))
out["exports"] = exports
for query in ["qemu:", "base:", "nbdkit:", "qemu:allocation-depth"]:
    h.clear_meta_contexts()
    h.add_meta_context(query)
    names = []
    h.opt_list_meta_context(lambda name: names.append(name))
    out["list " + query] = sorted(names)
h.clear_meta_contexts()
for context in ["base:allocation", "qemu:allocation-depth", "nbdkit:nothing"]:
    h.add_meta_context(context)
h.set_export_name("disk")
h.set_full_info(True)
h.opt_info()
out["size"] = h.get_size()
out["meta"] = {c: h.can_meta_context(c) for c in ["base:allocation", "qemu:allocation-depth"]}
out["read_only"] = h.is_read_only()
out["can"] = {n: getattr(h, "can_" + n)() for n in ["flush", "fua", "trim", "zero", "fast_zero", "cache", "df", "multi_conn"]}
def optional(get):
    try:
        return get()
    except nbd.Error:
        return None
out["description"] = optional(h.get_export_description)
out["canonical"] = optional(h.get_canonical_export_name)
out["block"] = [h.get_block_size(k) for k in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]
h.set_export_name("nope")
try:
    h.opt_info()
    out["unknown"] = "accepted"
except nbd.Error as e:
    out["unknown"] = "refused"
h.opt_abort()
print(json.dumps(out, sort_keys=True))
""";

    [Theory]
    [InlineData(true, false, 1)]
    [InlineData(false, true, 2)]
    public async Task Libnbd_option_mode_sees_what_qemu_nbd_shows(bool readOnly, bool allocationDepth, int maxConnections)
    {
        using var dir = new TempDirectory();
        string image = NegotiationImages.Create(dir.Path);
        string copy = dir.File("copy.qed");
        File.Copy(image, copy);
        string probe = dir.File("probe.py");
        File.WriteAllText(probe, LibnbdProbe);
        string? description = allocationDepth ? Description : null; // one case with, one without

        JsonElement ours;
        await using (var server = NbdTestServer.Start(
            dir.Path,
            image,
            ExportName,
            readOnly,
            e => e with { Description = description, AllocationDepth = allocationDepth },
            o => o with { MaxConnections = maxConnections }))
        {
            ours = RunProbe(dir.Path, probe, server.Uri());
        }

        var arguments = new List<string> { "-f", "qed", "-t", "-x", ExportName, "-e", maxConnections.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (description is not null)
        {
            arguments.AddRange(["-D", description]);
        }
        if (readOnly)
        {
            arguments.Add("-r");
        }
        if (allocationDepth)
        {
            arguments.Add("-A");
        }
        JsonElement theirs;
        string socketPath = dir.File("qemu.sock");
        using (var qemu = StartQemuNbd(socketPath, arguments, copy))
        {
            try
            {
                theirs = RunProbe(dir.Path, probe, $"nbd+unix:///?socket={socketPath}");
            }
            finally
            {
                qemu.Kill();
                qemu.WaitForExit();
            }
        }

        // Everything but the minimum and preferred block sizes (deliberate differences, see s_sameFields) must agree.
        int compared = 0;
        foreach (var property in theirs.EnumerateObject())
        {
            var actual = ours.GetProperty(property.Name);
            if (property.Name == "block")
            {
                Assert.Equal(property.Value[2].GetInt64(), actual[2].GetInt64());
                Assert.Equal(1, actual[0].GetInt64());
                Assert.Equal(NegotiationImages.ClusterSize, actual[1].GetInt64());
            }
            else
            {
                Assert.True(JsonElement.DeepEquals(property.Value, actual), $"{property.Name}: qemu-nbd {property.Value.GetRawText()}, ours {actual.GetRawText()}");
            }
            compared++;
        }
        Assert.Equal(ours.EnumerateObject().Count(), compared);
        Assert.Equal(13, compared);
    }

    private JsonElement RunProbe(string directory, string probe, string uri)
    {
        var result = Tools.Run("/usr/bin/python3", [probe, uri], directory, s_timeout);
        output.WriteLine($"libnbd probe {uri}: exit {result.ExitCode}\n{result.StdOut}{result.StdErr}");
        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.StdOut);
        return json.RootElement.Clone();
    }

    [Theory]
    [InlineData(false, false, true)]
    [InlineData(true, true, true)]
    [InlineData(true, false, false)]
    public async Task Nbdinfo_lists_over_tls(bool requireClientCertificate, bool clientHasCertificate, bool accepted)
    {
        using var dir = new TempDirectory();
        using var certificates = TestCertificates.Create();
        string clientDirectory = dir.File("client-creds");
        certificates.WriteClientDirectory(clientDirectory, clientHasCertificate);
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, ExportName, configureOptions: o => o with
        {
            TlsCertificate = certificates.Server,
            TlsClientCertificateAuthorities = requireClientCertificate ? [certificates.Ca] : null,
        });

        string uri = $"nbds+unix:///?socket={server.SocketPath}&tls-certificates={clientDirectory}";
        var result = Tools.Run("nbdinfo", ["--list", "--json", uri], dir.Path, s_timeout);
        output.WriteLine($"nbdinfo --list --json {uri}: exit {result.ExitCode}\n{result.StdOut}\n{result.StdErr}");
        if (!accepted)
        {
            Assert.NotEqual(0, result.ExitCode);
            await NegotiationFramingTests.AssertReported(diagnostics, "dropped");
            return;
        }

        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.StdOut);
        Assert.True(json.RootElement.GetProperty("TLS").GetBoolean());
        var export = Assert.Single(json.RootElement.GetProperty("exports").EnumerateArray().ToArray());
        Assert.Equal(ExportName, export.GetProperty("export-name").GetString());
        Assert.Equal(NegotiationImages.Size, export.GetProperty("export-size").GetInt64());
    }

    [Fact]
    public async Task Nbdinfo_and_qemu_img_go_over_tls_into_transmission()
    {
        // Past the handshake: GO over TLS, then the transmission phase on the encrypted transport (nbdinfo reads the
        // first 8 KiB, qemu-img probes the format). qemu's client (tls-creds-x509) also checks the server's name.
        using var dir = new TempDirectory();
        using var certificates = TestCertificates.Create();
        string clientDirectory = dir.File("client-creds");
        certificates.WriteClientDirectory(clientDirectory, withClientCertificate: true);
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, ExportName, configureOptions: o => o with
        {
            TlsCertificate = certificates.Server,
            TlsClientCertificateAuthorities = [certificates.Ca],
        });

        string uri = $"nbds+unix:///{ExportName}?socket={server.SocketPath}&tls-certificates={clientDirectory}";
        var nbdinfo = Tools.Run("nbdinfo", ["--json", uri], dir.Path, s_timeout);
        output.WriteLine($"nbdinfo --json {uri}: exit {nbdinfo.ExitCode}\n{nbdinfo.StdOut}{nbdinfo.StdErr}");
        Assert.Equal(0, nbdinfo.ExitCode);
        using (var json = JsonDocument.Parse(nbdinfo.StdOut))
        {
            Assert.True(json.RootElement.GetProperty("TLS").GetBoolean());
            var export = Assert.Single(json.RootElement.GetProperty("exports").EnumerateArray().ToArray());
            Assert.Equal(NegotiationImages.Size, export.GetProperty("export-size").GetInt64());
        }

        var qemuImg = Tools.Run(
            "qemu-img",
            [
                "info", "--output=json",
                "--object", $"tls-creds-x509,id=tls0,dir={clientDirectory},endpoint=client",
                "--image-opts", $"driver=nbd,server.type=unix,server.path={server.SocketPath},export={ExportName},tls-creds=tls0,tls-hostname=localhost",
            ],
            dir.Path,
            s_timeout);
        output.WriteLine($"qemu-img info over TLS: exit {qemuImg.ExitCode}\n{qemuImg.StdOut}{qemuImg.StdErr}");
        Assert.Equal(0, qemuImg.ExitCode);
        using (var json = JsonDocument.Parse(qemuImg.StdOut))
        {
            Assert.Equal(NegotiationImages.Size, json.RootElement.GetProperty("virtual-size").GetInt64());
        }
        Assert.DoesNotContain(diagnostics, line => line.Contains("dropped", StringComparison.Ordinal));
    }

    private JsonElement Nbdinfo(string directory, string? mode, string uri)
    {
        string[] arguments = mode is null ? ["--json", uri] : [mode, "--json", uri];
        var result = Tools.Run("nbdinfo", arguments, directory, s_timeout);
        output.WriteLine($"nbdinfo {string.Join(' ', arguments)}: exit {result.ExitCode}\n{result.StdOut}{result.StdErr}");
        Assert.Equal(0, result.ExitCode);
        using var json = JsonDocument.Parse(result.StdOut);
        return json.RootElement.Clone();
    }

    private static Process StartQemuNbd(string socketPath, List<string> arguments, string image)
    {
        var info = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true };
        info.ArgumentList.Add("-k");
        info.ArgumentList.Add(socketPath);
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.ArgumentList.Add(image);
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start qemu-nbd");
        try
        {
            UnixSocketListening.WaitFor(socketPath, process, s_timeout);
        }
        catch (TimeoutException)
        {
            process.Kill();
            throw;
        }
        return process;
    }
}
