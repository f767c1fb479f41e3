using System.Text.Json.Nodes;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// nbdinfo against <c>qed serve</c> and against qemu-nbd started with the same arguments on a copy of the same image
/// (NBD.md 7.1 #1-#6, 7.2 #11, #13): <c>--json</c>, <c>--list</c>, <c>--map</c> (text, totals, JSON and
/// <c>qemu:allocation-depth</c> with <c>-A</c>), <c>--can</c> / <c>--is</c>, and an unknown export.
/// </summary>
public sealed class NbdinfoInteropTests(ITestOutputHelper output)
{
    /// <summary>
    /// Where our answers may differ from qemu-nbd's on purpose, with the reason. Every other field of
    /// <c>nbdinfo --json</c> must be equal.
    /// </summary>
    internal static readonly IReadOnlyDictionary<string, string> DeliberateDifferences = new Dictionary<string, string>
    {
        ["block_size_minimum"] = "1: the engine does read-modify-write for any byte range itself (NBD.md 3.1), so clients need not align; qemu-nbd says 512 for QED",
        ["block_size_preferred"] = "the QED cluster size (64 KiB): smaller writes into an unallocated cluster cost a cluster allocation (NBD.md 3.1); qemu-nbd says 4096",
    };

    private static string[] ServeArguments(string socket, string image, params string[] extra) =>
        ["-t", "-e", "2", "-f", "qed", "-x", "disk", "-D", "interop test disk", .. extra, "-k", socket, image];

    [Fact]
    public async Task Json_list_and_maps_match_qemu_nbd()
    {
        using var dir = new TempDirectory();
        string ours = InteropImages.Layered(dir.File("qed"));
        string theirs = InteropImages.Layered(dir.File("qemu"));
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, ServeArguments(dir.File("qed.sock"), ours));
        await using var qemu = NbdServerProcess.Start(NbdServerKind.QemuNbd, dir.Path, ServeArguments(dir.File("qemu.sock"), theirs));

        // --json: every field of the export compared, the URI (which names the socket) normalised.
        JsonNode ourJson = NbdinfoJson(qed, "--json");
        JsonNode theirJson = NbdinfoJson(qemu, "--json");
        Assert.True(ourJson["structured"]!.GetValue<bool>(), ourJson.ToJsonString());
        Assert.Equal(InteropImages.Size, ourJson["exports"]![0]!["export-size"]!.GetValue<long>());
        var differences = new List<string>();
        CompareJson("", ourJson, theirJson, differences);
        Report("nbdinfo --json", differences);
        Assert.DoesNotContain(differences, d => !DeliberateDifferences.ContainsKey(d.Split(':')[0]));

        // --list: the same lines, apart from the fields allowed to differ.
        string[] ourList = ListLines(qed);
        string[] theirList = ListLines(qemu);
        Assert.Contains("export=\"disk\":", ourList);
        Assert.Contains(ourList, line => line == "description: interop test disk");
        Assert.Equal(theirList, ourList);

        // --map in text, with totals and as JSON: byte for byte, and the layout the recipe made.
        foreach (string[] map in new[] { new[] { "--map" }, ["--map", "--totals"], ["--map", "--json"] })
        {
            string ourMap = InteropRun.Ok(qed, "nbdinfo", [.. map, qed.Uri("disk")]).StdOut;
            string theirMap = InteropRun.Ok(qemu, "nbdinfo", [.. map, qemu.Uri("disk")]).StdOut;
            output.WriteLine($"nbdinfo {string.Join(' ', map)} (qed):\n{ourMap}");
            Assert.Equal(theirMap, ourMap);
        }
        string[] extents = InteropRun.Ok("nbdinfo", "--map", qed.Uri("disk")).StdOut
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => string.Join(' ', line.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToArray();
        Assert.Equal(
            [
                "0 1048576 0 data", "1048576 1048576 3 hole,zero", "2097152 1048576 0 data",
                "3145728 30408704 3 hole,zero", "33554432 8388608 0 data", "41943040 25165824 3 hole,zero",
            ],
            extents);
        string totals = InteropRun.Ok("nbdinfo", "--map", "--totals", qed.Uri("disk")).StdOut;
        Assert.Contains("10485760", totals, StringComparison.Ordinal); // data = 10 MiB

        await qed.StopCleanlyAsync();
        await qemu.StopCleanlyAsync();
        InteropImages.AssertChecksClean(ours);
    }

    [Fact]
    public async Task Can_and_is_answers_match_qemu_nbd_writable_and_read_only()
    {
        using var dir = new TempDirectory();
        string[] features = ["connect", "read", "write", "cache", "df", "fast-zero", "flush", "fua", "multi-conn", "trim", "zero", "structured-reply"];
        foreach (bool readOnly in new[] { false, true })
        {
            string ours = InteropImages.EmptyQed(dir.File("qed"), $"disk-{readOnly}.qed");
            string theirs = InteropImages.EmptyQed(dir.File("qemu"), $"disk-{readOnly}.qed");
            string[] extra = readOnly ? ["-r"] : [];
            await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, ServeArguments(dir.File($"qed-{readOnly}.sock"), ours, extra));
            await using var qemu = NbdServerProcess.Start(NbdServerKind.QemuNbd, dir.Path, ServeArguments(dir.File($"qemu-{readOnly}.sock"), theirs, extra));
            var lines = new List<string>();
            foreach (var (verb, what) in features.Select(f => ("--can", f)).Concat([("--is", "read-only"), ("--is", "rotational"), ("--is", "tls")]))
            {
                int ourExit = InteropRun.Raw("nbdinfo", verb, what, qed.Uri("disk")).ExitCode;
                int theirExit = InteropRun.Raw("nbdinfo", verb, what, qemu.Uri("disk")).ExitCode;
                lines.Add($"{(readOnly ? "-r " : "")}{verb} {what}: qed {ourExit}, qemu-nbd {theirExit}");
                Assert.True(ourExit is 0 or 2, $"nbdinfo {verb} {what} exited {ourExit} against {qed}: {qed.StdErr}");
                if (!DeliberateDifferences.ContainsKey("can_" + what.Replace('-', '_')))
                {
                    Assert.True(ourExit == theirExit, string.Join('\n', lines));
                }
            }
            output.WriteLine(string.Join('\n', lines));
            Assert.Equal(readOnly ? 0 : 2, InteropRun.Raw("nbdinfo", "--is", "read-only", qed.Uri("disk")).ExitCode);
            Assert.Equal(readOnly ? 2 : 0, InteropRun.Raw("nbdinfo", "--can", "write", qed.Uri("disk")).ExitCode);
            await qed.StopCleanlyAsync();
            await qemu.StopCleanlyAsync();
            InteropImages.AssertChecksClean(ours);
        }
    }

    [Fact]
    public async Task Unknown_export_fails_and_the_server_keeps_serving()
    {
        using var dir = new TempDirectory();
        string ours = InteropImages.EmptyQed(dir.Path, "disk.qed");
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, ServeArguments(dir.File("qed.sock"), ours));
        var missing = InteropRun.Raw("nbdinfo", qed.Uri("nope"));
        output.WriteLine($"nbdinfo of an unknown export: {missing}");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("nope", missing.StdErr, StringComparison.Ordinal);
        Assert.False(qed.HasExited, qed.StdErr);
        Assert.Equal(InteropImages.SizeText, InteropRun.Ok(qed, "nbdinfo", "--size", qed.Uri("disk")).StdOut.Trim());
        await qed.StopCleanlyAsync();
        InteropImages.AssertChecksClean(ours);
    }

    [Fact]
    public async Task Allocation_depth_map_of_an_overlay_matches_qemu_nbd()
    {
        using var dir = new TempDirectory();
        string ours = InteropImages.Layered(dir.File("qed"));
        string theirs = InteropImages.Layered(dir.File("qemu"));
        await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, ServeArguments(dir.File("qed.sock"), ours, "-A", "-r"));
        await using var qemu = NbdServerProcess.Start(NbdServerKind.QemuNbd, dir.Path, ServeArguments(dir.File("qemu.sock"), theirs, "-A", "-r"));
        string ourMap = InteropRun.Ok(qed, "nbdinfo", "--map=qemu:allocation-depth", qed.Uri("disk")).StdOut;
        string theirMap = InteropRun.Ok(qemu, "nbdinfo", "--map=qemu:allocation-depth", qemu.Uri("disk")).StdOut;
        output.WriteLine($"qemu:allocation-depth (qed):\n{ourMap}\n(qemu-nbd):\n{theirMap}");
        Assert.Equal(theirMap, ourMap);
        Assert.Contains("local", ourMap, StringComparison.Ordinal);
        Assert.Contains("backing depth 2", ourMap, StringComparison.Ordinal);

        // The context is listed only with -A, as by qemu-nbd; base:allocation is still the default map.
        Assert.Contains("qemu:allocation-depth", InteropRun.Ok("nbdinfo", "--list", qed.Uri("disk")).StdOut, StringComparison.Ordinal);
        Assert.Equal(
            InteropRun.Ok("nbdinfo", "--map", qemu.Uri("disk")).StdOut,
            InteropRun.Ok(qed, "nbdinfo", "--map", qed.Uri("disk")).StdOut);
        await qed.StopCleanlyAsync();
        await qemu.StopCleanlyAsync();
    }

    private void Report(string what, List<string> differences) =>
        output.WriteLine(differences.Count == 0
            ? $"{what}: no differences from qemu-nbd"
            : $"{what}: differences from qemu-nbd:\n  " + string.Join("\n  ", differences.Select(d =>
                DeliberateDifferences.TryGetValue(d.Split(':')[0], out string? why) ? $"{d} (deliberate: {why})" : d)));

    private static JsonNode NbdinfoJson(NbdServerProcess server, string flag)
    {
        string text = InteropRun.Ok(server, "nbdinfo", flag, server.Uri("disk")).StdOut;
        return JsonNode.Parse(text.Replace(server.SocketPath!, "SOCKET", StringComparison.Ordinal))!;
    }

    private static string[] ListLines(NbdServerProcess server) =>
        InteropRun.Ok(server, "nbdinfo", "--list", server.Uri("disk")).StdOut
            .Replace(server.SocketPath!, "SOCKET", StringComparison.Ordinal)
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(line => !DeliberateDifferences.ContainsKey(line.Split(':')[0]))
            .ToArray();

    /// <summary>Adds "path: ours vs theirs" for every leaf that differs; the path's last name is the field (e.g. can_multi_conn).</summary>
    private static void CompareJson(string path, JsonNode? ours, JsonNode? theirs, List<string> differences)
    {
        if (ours is JsonObject ourObject && theirs is JsonObject theirObject)
        {
            foreach (string key in ourObject.Select(p => p.Key).Union(theirObject.Select(p => p.Key)))
            {
                CompareJson(key, ourObject[key], theirObject[key], differences);
            }
        }
        else if (ours is JsonArray ourArray && theirs is JsonArray theirArray && ourArray.Count == theirArray.Count)
        {
            for (int i = 0; i < ourArray.Count; i++)
            {
                CompareJson(path, ourArray[i], theirArray[i], differences);
            }
        }
        else if (ours?.ToJsonString() != theirs?.ToJsonString())
        {
            differences.Add($"{path}: qed {ours?.ToJsonString() ?? "(absent)"} vs qemu-nbd {theirs?.ToJsonString() ?? "(absent)"}");
        }
    }
}
