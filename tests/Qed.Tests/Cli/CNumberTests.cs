using Qed.Cli.CommandLine;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>The one reader of C numbers (<c>strtoul</c>/<c>strtol</c> with base 0), used by bench's counts and qemu-io's pattern bytes and milliseconds.</summary>
public class CNumberTests
{
    [Theory]
    [InlineData("0", 0UL)]
    [InlineData("75000", 75000UL)]
    [InlineData("0x10", 16UL)]
    [InlineData("0X1f", 31UL)]
    [InlineData("010", 8UL)]
    [InlineData(" 5", 5UL)]
    [InlineData("+7", 7UL)]
    [InlineData("-0", 0UL)]
    [InlineData("2147483647", 2147483647UL)]
    public void Counts_parse_as_strtoul_does(string text, ulong expected)
    {
        Assert.True(CNumber.TryParseUnsigned(text, int.MaxValue, out ulong value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("x")]
    [InlineData("1k")]
    [InlineData("5 ")]
    [InlineData("08")]
    [InlineData("0x")]
    [InlineData("-1")]
    [InlineData("2147483648")]
    [InlineData("99999999999999999999999")]
    public void Bad_counts_are_refused(string text)
    {
        Assert.False(CNumber.TryParseUnsigned(text, int.MaxValue, out _));
    }

    [Fact]
    public void Unsigned_wraps_a_negative_number_as_c_does()
    {
        Assert.True(CNumber.TryParseUnsigned("-1", ulong.MaxValue, out ulong value));
        Assert.Equal(ulong.MaxValue, value);
        Assert.False(CNumber.TryParseUnsigned("18446744073709551616", ulong.MaxValue, out _));
    }

    [Theory]
    [InlineData("0", 0L)]
    [InlineData("255", 255L)]
    [InlineData("0xff", 255L)]
    [InlineData("0377", 255L)]
    [InlineData("-0", 0L)]
    [InlineData("-5", -5L)]
    [InlineData("-9223372036854775808", long.MinValue)]
    [InlineData("9223372036854775807", long.MaxValue)]
    public void Signed_numbers_parse_as_strtol_does(string text, long expected)
    {
        Assert.True(CNumber.TryParseSigned(text, long.MinValue, long.MaxValue, out long value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("9223372036854775808")]
    [InlineData("-9223372036854775809")]
    [InlineData("0x")]
    [InlineData("1.5")]
    public void Signed_refuses_what_strtol_cannot_take_whole(string text)
    {
        // Out of range saturates in C (and then fails any narrower range); here the full range refuses it too.
        Assert.False(CNumber.TryParseSigned(text, long.MinValue + 1, long.MaxValue - 1, out _));
    }

    /// <summary>Pattern bytes that qemu-io accepts or refuses: qed io agrees on each.</summary>
    [Theory]
    [InlineData("0x5a")]
    [InlineData("0132")]
    [InlineData("90")]
    [InlineData("-0")]
    [InlineData("256")]
    [InlineData("-1")]
    [InlineData("0x")]
    [InlineData("08")]
    [InlineData("1k")]
    public void Pattern_bytes_are_read_as_qemu_io_reads_them(string pattern)
    {
        using var dir = new TempDirectory();
        string image = dir.File("p.raw");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "raw", image, "64k");
        var qemu = Tools.Run("qemu-io", ["-f", "raw", "-c", $"write -q -P {pattern} 0 512", image], dir.Path);
        var ours = QedCli.Run("io", "-f", "raw", "-c", $"write -q -P {pattern} 0 512", image);
        Assert.Equal(qemu.StdOut, ours.StdOut);
    }
}
