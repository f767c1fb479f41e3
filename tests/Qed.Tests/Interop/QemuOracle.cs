using System.Globalization;
using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>The result of <c>qemu-img check --output=json</c>; absent JSON keys count as 0.</summary>
internal sealed record QemuCheckReport(int ExitCode, long TotalClusters, long AllocatedClusters, long FragmentedClusters, long Corruptions, long Leaks, long CheckErrors, string Output)
{
    public bool IsClean => ExitCode == 0 && Corruptions == 0 && Leaks == 0 && CheckErrors == 0;

    /// <summary>True when QEMU checked the image and found neither corruption nor a failure to check (leaks allowed).</summary>
    public bool NoCorruption => ExitCode is 0 or 3 && Corruptions == 0 && CheckErrors == 0;

    public override string ToString() => Output;
}

/// <summary>One extent of <c>qemu-img map --output=json</c>.</summary>
internal sealed record QemuMapExtent(long Start, long Length, int Depth, bool Present, bool Zero, bool Data, long? Offset)
{
    public long End => Start + Length;
}

/// <summary>qemu-img used as the oracle: check, compare, map and reads of any window of a virtual disk. Every tool runs with arguments, never through a shell.</summary>
internal static class QemuOracle
{
    public static QemuCheckReport Check(string dir, string image, string format = "qed")
    {
        var result = Tools.QemuImgRaw(dir, "check", "-f", format, "--output=json", image);
        var report = CheckReport.From(result);
        return new QemuCheckReport(report.ExitCode, report.Total, report.Allocated, report.Fragmented, report.Corruptions, report.Leaks, report.CheckErrors, result.ToString());
    }

    /// <summary>
    /// qemu-img check finds no error, no leak, and exits 0, and our own checker (read-only, no repair) reports
    /// the same counters; returns QEMU's report for its statistics.
    /// </summary>
    public static QemuCheckReport AssertClean(string dir, string image, string format = "qed")
    {
        var report = Check(dir, image, format);
        Assert.True(report.IsClean, $"qemu-img check {image} is not clean:\n{report}");
        AssertOurCheckAgrees(dir, image, report);
        return report;
    }

    /// <summary>Our checker's counters equal qemu-img check's (leaks may be fewer: QEMU's spurious leaks, §8.4).</summary>
    public static void AssertOurCheckAgrees(string dir, string image, QemuCheckReport qemu)
    {
        using var device = InteropAssert.OpenReadOnly(Path.Combine(dir, image));
        var ours = device.Check();
        string both = $"ours: {ours}\nqemu-img check {image}:\n{qemu}";
        Assert.True(
            ours.TotalClusters == qemu.TotalClusters && ours.AllocatedClusters == qemu.AllocatedClusters
            && ours.FragmentedClusters == qemu.FragmentedClusters && ours.Corruptions == qemu.Corruptions
            && ours.CheckErrors == qemu.CheckErrors && ours.Leaks <= qemu.Leaks,
            both);
        long fileClusters = new FileInfo(Path.Combine(dir, image)).Length / device.Geometry.ClusterSize;
        if (fileClusters < device.Geometry.ClusterSize - 1)
        {
            Assert.True(ours.Leaks == qemu.Leaks, both);
        }
    }

    /// <summary><c>qemu-img compare</c> (guest views, backing chains included) reports identical images.</summary>
    public static void AssertIdentical(string dir, string a, string b, string formatA = "qed", string formatB = "qed")
    {
        var result = Tools.QemuImgRaw(dir, "compare", "-f", formatA, "-F", formatB, a, b);
        Assert.True(result.ExitCode == 0, $"qemu-img compare {a} {b}:\n{result}");
    }

    /// <summary>Runs <c>qemu-img compare</c> and returns its exit code (0 identical, 1 different).</summary>
    public static ToolResult Compare(string dir, string a, string b, string formatA = "qed", string formatB = "qed") =>
        Tools.QemuImgRaw(dir, "compare", "-f", formatA, "-F", formatB, a, b);

    public static IReadOnlyList<QemuMapExtent> Map(string dir, string image, string format = "qed")
    {
        var result = Tools.QemuImg(dir, "map", "-f", format, "--output=json", image);
        using var json = JsonDocument.Parse(result.StdOut);
        var extents = new List<QemuMapExtent>();
        foreach (var e in json.RootElement.EnumerateArray())
        {
            extents.Add(new QemuMapExtent(
                e.GetProperty("start").GetInt64(),
                e.GetProperty("length").GetInt64(),
                e.GetProperty("depth").GetInt32(),
                e.GetProperty("present").GetBoolean(),
                e.GetProperty("zero").GetBoolean(),
                e.GetProperty("data").GetBoolean(),
                e.TryGetProperty("offset", out var offset) ? offset.GetInt64() : null));
        }
        return extents;
    }

    /// <summary>The extents of a map that overlap <c>[start, end)</c>.</summary>
    public static IEnumerable<QemuMapExtent> Overlapping(IEnumerable<QemuMapExtent> map, long start, long end) =>
        map.Where(e => e.Start < end && e.End > start);

    /// <summary>
    /// QEMU's view of the window <c>[offset, offset+length)</c> of a virtual disk, backing chain included: a raw
    /// node with offset/size over the image node, converted to a raw file (works for 16 TiB disks).
    /// </summary>
    public static byte[] ReadWindow(string dir, string image, long offset, long length, string format = "qed")
    {
        string output = Path.Combine(dir, "window-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        string full = Path.GetFullPath(Path.Combine(dir, image));
        Assert.DoesNotContain(',', full);
        string options = string.Create(CultureInfo.InvariantCulture,
            $"driver=raw,offset={offset},size={length},file.driver={format},file.file.driver=file,file.file.filename={full}");
        try
        {
            Tools.QemuImg(dir, "convert", "--image-opts", options, "-O", "raw", output);
            byte[] bytes = File.ReadAllBytes(output);
            Assert.Equal(length, bytes.LongLength);
            return bytes;
        }
        finally
        {
            File.Delete(output);
        }
    }

    /// <summary>
    /// Has qemu-io check, in one process, that every window of the image reads as the model says: each window
    /// is cut into runs of one byte value and each run becomes a <c>read -P value offset length</c>, which
    /// fails on the first mismatch. Cheaper than a convert per window when windows are many.
    /// </summary>
    /// <remarks>Windows with many runs (random backing data) are read with <see cref="ReadWindow"/> instead.</remarks>
    public static void VerifyWindows(string dir, string image, IGuestView model, IEnumerable<(long Offset, long Length)> windows)
    {
        const int MaxRunsPerWindow = 256;
        var commands = new List<string>();
        foreach (var (offset, length) in windows)
        {
            byte[] bytes = new byte[length];
            model.Read(bytes, offset);
            var runs = new List<string>();
            int start = 0;
            for (int i = 1; i <= bytes.Length && runs.Count <= MaxRunsPerWindow; i++)
            {
                if (i == bytes.Length || bytes[i] != bytes[start])
                {
                    runs.Add(string.Create(CultureInfo.InvariantCulture, $"read -P 0x{bytes[start]:x2} {offset + start} {i - start}"));
                    start = i;
                }
            }
            if (runs.Count > MaxRunsPerWindow)
            {
                InteropAssert.SameBytes(bytes, ReadWindow(dir, image, offset, length), offset, $"QEMU's read of {image}");
            }
            else
            {
                commands.AddRange(runs);
            }
        }
        if (commands.Count == 0)
        {
            return;
        }
        var result = Tools.Run("qemu-io", ["-f", "qed", "-r", .. commands.SelectMany(c => new[] { "-c", c }), image], dir);
        Assert.True(result.ExitCode == 0 && !result.StdOut.Contains("fail", StringComparison.Ordinal),
            $"qemu-io pattern check of {image} against the model:\n{result}");
    }

    /// <summary>Flattens an image to a raw file with <c>qemu-img convert</c>; the caller deletes it.</summary>
    public static string Flatten(string dir, string image, string format = "qed")
    {
        string output = Path.Combine(dir, "flat-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        Tools.QemuImg(dir, "convert", "-f", format, "-O", "raw", image, output);
        return output;
    }

    /// <summary>Runs qemu-io commands that must all succeed (pattern checks included: <c>read -P</c> fails on a mismatch).</summary>
    public static void Io(string dir, string image, params string[] commands) => Tools.QemuIo(dir, "qed", image, commands);
}
