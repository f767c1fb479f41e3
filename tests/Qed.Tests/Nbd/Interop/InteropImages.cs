using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// The images the interop tests serve, made with qemu's own tools (NBD.md 7's recipe, scaled to 64 MiB): a raw backing
/// file with 1 MiB of 0x11 at 0 under a QED overlay holding 0x22 at 2 MiB, a zero cluster at 4 MiB and 8 MiB of 0x33 at
/// 32 MiB. The flattened guest view is data 0-1 MiB, hole+zero, data 2-3 MiB, hole+zero, data 32-40 MiB, hole+zero.
/// </summary>
internal static class InteropImages
{
    /// <summary>Virtual size of every interop image.</summary>
    public const long Size = 64L * 1024 * 1024;

    /// <summary>The size as qemu-img takes it.</summary>
    public static string SizeText => Size.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Builds the layered image in <paramref name="directory"/> (created if needed): <c>base.raw</c> and <c>disk.qed</c>
    /// naming it; returns the overlay's path. Each server gets its own directory, so neither sees the other's locks.
    /// </summary>
    public static string Layered(string directory)
    {
        Directory.CreateDirectory(directory);
        Tools.QemuImg(directory, "create", "-q", "-f", "raw", "base.raw", SizeText);
        Tools.QemuIo(directory, "raw", "base.raw", "write -P 0x11 0 1M");
        Tools.QemuImg(directory, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "disk.qed", SizeText);
        Tools.QemuIo(directory, "qed", "disk.qed", "write -P 0x22 2M 1M", "write -z 4M 1M", "write -P 0x33 32M 8M");
        return Path.Combine(directory, "disk.qed");
    }

    /// <summary>The flattened guest view of <paramref name="image"/> as a raw file (qemu-img convert), for cmp and compare.</summary>
    public static string Flatten(string image, string rawPath)
    {
        Tools.QemuImg(Path.GetDirectoryName(rawPath)!, "convert", "-f", "qed", "-O", "raw", image, rawPath);
        return rawPath;
    }

    /// <summary>A fresh empty QED image of <paramref name="size"/> bytes (64 KiB clusters, qemu-img's default).</summary>
    public static string EmptyQed(string directory, string name, long size = Size)
    {
        Directory.CreateDirectory(directory);
        Tools.QemuImg(directory, "create", "-q", "-f", "qed", name, size.ToString(CultureInfo.InvariantCulture));
        return Path.Combine(directory, name);
    }

    /// <summary>A raw file of <paramref name="size"/> bytes of deterministic non-zero data (so nothing in it is skipped as zeros).</summary>
    public static string PatternRaw(string path, long size, int seed)
    {
        var random = new Random(seed);
        var block = new byte[1024 * 1024];
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        for (long at = 0; at < size; at += block.Length)
        {
            random.NextBytes(block);
            block[0] |= 1; // never an all-zero block
            stream.Write(block, 0, (int)Math.Min(block.Length, size - at));
        }
        return path;
    }

    /// <summary>True when both files hold the same bytes (cmp).</summary>
    public static bool SameContent(string a, string b)
    {
        var result = Tools.Run("cmp", ["-s", a, b], timeout: TimeSpan.FromSeconds(30));
        return result.ExitCode == 0;
    }

    /// <summary>
    /// <c>qemu-img check</c> of a QED image: throws unless qemu found no corruption and no check error (leaks, which an
    /// interrupted allocating write may leave, are allowed only when <paramref name="leaksAllowed"/>).
    /// </summary>
    public static CheckReport AssertChecksClean(string image, bool leaksAllowed = false)
    {
        var report = CheckReport.From(Tools.QemuImgRaw(Path.GetDirectoryName(image)!, "check", "-f", "qed", "--output=json", image));
        Assert.True(report.HasReport, $"qemu-img check printed no report: {report}");
        Assert.True(report.Corruptions == 0 && report.CheckErrors == 0, $"qemu-img check found damage: {report}");
        if (!leaksAllowed)
        {
            Assert.True(report.Leaks == 0 && report.ExitCode == 0, $"qemu-img check not clean: {report}");
        }
        return report;
    }
}
