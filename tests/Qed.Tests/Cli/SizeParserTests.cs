using Qed.Cli.CommandLine;

namespace Qed.Tests.Cli;

/// <summary>Size strings as qemu-img 7.2 reads them (every expected value was observed with <c>qemu-img create -f raw x SIZE</c>).</summary>
public class SizeParserTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("1000", 1000L)]
    [InlineData("1b", 1L)]
    [InlineData("1B", 1L)]
    [InlineData("1k", 1024L)]
    [InlineData("1K", 1024L)]
    [InlineData("1M", 1048576L)]
    [InlineData("1m", 1048576L)]
    [InlineData("10M", 10485760L)]
    [InlineData("1G", 1073741824L)]
    [InlineData("1T", 1099511627776L)]
    [InlineData("1P", 1125899906842624L)]
    [InlineData("1E", 1152921504606846976L)]
    [InlineData("1.5M", 1572864L)]
    [InlineData("0.5k", 512L)]
    [InlineData("0.1k", 102L)]
    [InlineData("0.9k", 922L)]
    [InlineData("0.0007k", 1L)]
    [InlineData("0.00048828125k", 1L)]
    [InlineData("1.0000001k", 1024L)]
    [InlineData("1.k", 1024L)]
    [InlineData("1.", 1L)]
    [InlineData("1.0", 1L)]
    [InlineData("1.0b", 1L)]
    [InlineData("1.5e", 1729382256910270464L)]
    [InlineData("0.0000001e", 115292150461L)]
    [InlineData("0.99999999999999999k", 0L)]
    [InlineData("1.99999999999999999k", 1024L)]
    [InlineData("0x1000", 4096L)]
    [InlineData("0X10", 16L)]
    [InlineData("0x1k", 1024L)]
    [InlineData("00012", 12L)]
    [InlineData(" 1M", 1048576L)]
    [InlineData("+5", 5L)]
    [InlineData("7E", 8070450532247928832L)]
    [InlineData("9223372036854775807", long.MaxValue)]
    public void Accepts_what_qemu_accepts(string text, long expected)
    {
        Assert.True(SizeParser.TryParse(text, out long value, out var error), $"{text}: {error}");
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("foo")]
    [InlineData("1.5")]
    [InlineData("1.5b")]
    [InlineData("0x1.8k")]
    [InlineData("0x")]
    [InlineData("1e3")]
    [InlineData("1.5e3")]
    [InlineData("1.5E-1")]
    [InlineData("1M ")]
    [InlineData("1 k")]
    [InlineData("1MB")]
    [InlineData("1kib")]
    [InlineData(".5k")]
    [InlineData("-1")]
    [InlineData("-0")]
    [InlineData("1Q")]
    public void Refuses_what_qemu_refuses(string text)
    {
        Assert.False(SizeParser.TryParse(text, out _, out var error));
        Assert.Equal(SizeParseError.Invalid, error);
    }

    [Theory]
    [InlineData("9223372036854775808")]
    [InlineData("18446744073709551615")]
    [InlineData("18446744073709551616")]
    [InlineData("99999999999999999999")]
    [InlineData("8E")]
    [InlineData("16E")]
    [InlineData("17E")]
    [InlineData("15.99999E")]
    [InlineData("99E")]
    public void Reports_values_beyond_int64_as_too_large(string text)
    {
        Assert.False(SizeParser.TryParse(text, out _, out var error));
        Assert.Equal(SizeParseError.TooLarge, error);
    }
}
