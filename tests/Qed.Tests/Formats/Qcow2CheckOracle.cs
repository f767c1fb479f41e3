using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Qed.Check;
using Qed.Formats.Qcow2;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>
/// Runs our qcow2 check and <c>qemu-img check --output=json</c> on the same file and compares everything qemu-img
/// reports: every counter of the JSON report (or its absence when the check stopped), the exit status and every
/// stderr line in order.
/// </summary>
internal static class Qcow2CheckOracle
{
    /// <summary>What one check reported, in qemu-img's terms.</summary>
    public sealed record Outcome(int ExitCode, IReadOnlyDictionary<string, long>? Counters, IReadOnlyList<string> StdErr)
    {
        public override string ToString() =>
            $"exit {ExitCode}; {(Counters is null ? "no report" : string.Join(", ", Counters.Select(c => $"{c.Key}={c.Value}")))}\n  {string.Join("\n  ", StdErr)}";
    }

    private static readonly string[] s_counterKeys =
        ["image-end-offset", "compressed-clusters", "total-clusters", "corruptions", "check-errors", "leaks", "allocated-clusters", "fragmented-clusters"];

    /// <summary>qemu-img's check of <paramref name="path"/> (run in its directory).</summary>
    public static Outcome Qemu(string path)
    {
        var result = Tools.QemuImgRaw(Path.GetDirectoryName(path)!, "check", "--output=json", "-f", "qcow2", Path.GetFileName(path));
        Dictionary<string, long>? counters = null;
        if (!string.IsNullOrWhiteSpace(result.StdOut))
        {
            using var json = JsonDocument.Parse(result.StdOut);
            counters = s_counterKeys.ToDictionary(k => k, k => json.RootElement.TryGetProperty(k, out var v) ? v.GetInt64() : 0);
        }
        return new Outcome(result.ExitCode, counters, Lines(result.StdErr));
    }

    /// <summary>Our check of <paramref name="path"/>, its messages printed as qemu-img prints them.</summary>
    public static Outcome Ours(string path, bool useAsync)
    {
        CheckResult result;
        using (var file = HandleFileAccessor.Open(path, readOnly: true))
        {
            result = Qcow2Format.CheckFileAsync(file, useAsync, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        }
        var stderr = Lines(string.Concat(result.Messages.Select(m => m.Kind switch
        {
            CheckMessageKind.Error => "qemu-img: " + m.Text + "\n",
            CheckMessageKind.Warning => "qemu-img: warning: " + m.Text + "\n",
            CheckMessageKind.Unterminated => m.Text,
            _ => m.Text + "\n",
        }))).ToList();
        if (result.AbortReason is not null)
        {
            stderr.Add("qemu-img: Check failed: " + result.AbortReason);
            return new Outcome(1, null, stderr);
        }
        if (result.CheckErrors != 0)
        {
            stderr.Add("qemu-img: Check failed");
        }
        var counters = new Dictionary<string, long>
        {
            ["image-end-offset"] = result.ImageEndOffset,
            ["compressed-clusters"] = result.CompressedClusters,
            ["total-clusters"] = result.TotalClusters,
            ["corruptions"] = result.Corruptions,
            ["check-errors"] = result.CheckErrors,
            ["leaks"] = result.Leaks,
            ["allocated-clusters"] = result.AllocatedClusters,
            ["fragmented-clusters"] = result.FragmentedClusters,
        };
        int exit = result.CheckErrors != 0 ? 1 : result.Corruptions != 0 ? 2 : result.Leaks != 0 ? 3 : 0;
        return new Outcome(exit, counters, stderr);
    }

    /// <summary>Asserts that our check (sync and async) says exactly what qemu-img says; returns qemu-img's outcome.</summary>
    public static Outcome AssertSame(string path)
    {
        var expected = Qemu(path);
        foreach (bool useAsync in new[] { false, true })
        {
            var actual = Ours(path, useAsync);
            Assert.True(Same(expected, actual), $"{Path.GetFileName(path)} (async {useAsync}):\nqemu-img: {expected}\nqed:      {actual}");
        }
        return expected;
    }

    private static bool Same(Outcome a, Outcome b) =>
        a.ExitCode == b.ExitCode && a.StdErr.SequenceEqual(b.StdErr)
        && (a.Counters is null ? b.Counters is null : b.Counters is not null && a.Counters.All(c => b.Counters[c.Key] == c.Value));

    private static string[] Lines(string text) => text.Length == 0 ? [] : text.TrimEnd('\n').Split('\n');

    /// <summary>Writes a big-endian value of <paramref name="width"/> bytes at <paramref name="offset"/> (qcow2 is big-endian).</summary>
    public static void PokeBigEndian(string path, long offset, ulong value, int width = 8)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        Tools.Poke(path, offset, bytes[(8 - width)..]);
    }

    /// <summary>Reads a big-endian u64 at <paramref name="offset"/>.</summary>
    public static ulong PeekBigEndian(string path, long offset)
    {
        using var stream = File.OpenRead(path);
        byte[] bytes = new byte[8];
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        return BinaryPrimitives.ReadUInt64BigEndian(bytes);
    }

    /// <summary>A hex string for messages.</summary>
    public static string Hex(ulong value) => value.ToString("x", CultureInfo.InvariantCulture);
}
