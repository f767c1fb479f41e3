using Qed.Cli.CommandLine;
using Qed.Cli.Output;

namespace Qed.Tests.Cli;

/// <summary>The number formats borrowed from qemu-img and qemu-io, checked against values they printed.</summary>
public class OutputFormatTests
{
    [Theory]
    [InlineData(0UL, "0 B")]
    [InlineData(512UL, "512 B")]
    [InlineData(999UL, "999 B")]
    [InlineData(1000UL, "0.977 KiB")]
    [InlineData(1024UL, "1 KiB")]
    [InlineData(4096UL, "4 KiB")]
    [InlineData(102400UL, "100 KiB")]
    [InlineData(266240UL, "260 KiB")]
    [InlineData(724992UL, "708 KiB")]
    [InlineData(1048576UL, "1 MiB")]
    [InlineData(1572864UL, "1.5 MiB")]
    [InlineData(2109440UL, "2.01 MiB")]
    [InlineData(10485760UL, "10 MiB")]
    [InlineData(1023UL * 1024 * 1024, "0.999 GiB")]
    [InlineData(70368744177664UL, "64 TiB")]
    [InlineData(9223372036854775807UL, "8 EiB")]
    public void Human_sizes_match_qemu_img(ulong bytes, string expected) => Assert.Equal(expected, SizeFormatter.Format(bytes));

    [Theory]
    [InlineData(0.0, "0")]
    [InlineData(1.0, "1")]
    [InlineData(1.5, "1.5")]
    [InlineData(0.9765625, "0.977")]
    [InlineData(999.4, "999")]
    [InlineData(999.6, "1e+03")]
    [InlineData(123456.0, "1.23e+05")]
    [InlineData(0.00001234, "1.23e-05")]
    [InlineData(0.0001234, "0.000123")]
    public void Three_significant_digits_like_printf_g(double value, string expected) =>
        Assert.Equal(expected, SizeFormatter.FormatSignificant3(value));

    [Theory]
    [InlineData(0.0, "0 bytes")]
    [InlineData(1.0, "1 bytes")]
    [InlineData(20.0, "20 bytes")]
    [InlineData(1000.0, "1000 bytes")]
    [InlineData(847.549565, "847.549565 bytes")]
    [InlineData(1536.0, "1.500 KiB")]
    [InlineData(4096.0, "4 KiB")]
    [InlineData(65536.0, "64 KiB")]
    [InlineData(1048576.0, "1 MiB")]
    [InlineData(2147483136.0, "2 GiB")]
    [InlineData(277766144.0, "264.898 MiB")]
    public void Qemu_io_amounts(double value, string expected) => Assert.Equal(expected, IoStatistics.FormatAmount(value));

    [Theory]
    [InlineData(0L, "00.00 sec")]
    [InlineData(1_200_000L, "00.12 sec")]
    [InlineData(77_300_000L, "0:00:07.73")]
    [InlineData(37_235_000_000L, "1:02:03.50")]
    public void Qemu_io_times(long ticks, string expected) => Assert.Equal(expected, IoStatistics.FormatTime(TimeSpan.FromTicks(ticks)));

    [Fact]
    public void Statistics_line_has_qemu_io_layout()
    {
        string line = IoStatistics.Format(4096, 1, TimeSpan.FromSeconds(0.5));
        Assert.Equal("4 KiB, 1 ops; 00.50 sec (8 KiB/sec and 2.0000 ops/sec)", line);
    }

    [Fact]
    public void Hex_dump_matches_qemu_io()
    {
        // qemu-io -c 'read -v 4090 20' after 'write 0 4k' and 'write -P 0xab 4k 4k'.
        byte[] data = [.. Enumerable.Repeat((byte)0xcd, 6), .. Enumerable.Repeat((byte)0xab, 14)];
        var writer = new StringWriter { NewLine = "\n" };
        HexDump.Write(writer, data, 4090);
        Assert.Equal(
            "00000ffa:  cd cd cd cd cd cd ab ab ab ab ab ab ab ab ab ab  ................\n" +
            "0000100a:  ab ab ab ab  ....\n",
            writer.ToString());

        writer = new StringWriter();
        HexDump.Write(writer, "AAAAAAAAAAAAAAAA\0~ "u8.ToArray(), 0);
        Assert.Equal(
            "00000000:  41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41  AAAAAAAAAAAAAAAA\n" +
            "00000010:  00 7e 20  .~ \n",
            writer.ToString());
    }

    [Fact]
    public void Progress_line_is_rewritten_with_carriage_returns()
    {
        var writer = new StringWriter();
        var progress = new ProgressReporter(writer);
        progress.Start();
        progress.Report(1, 200);
        progress.Report(2, 200);
        progress.Report(3, 200);
        progress.Report(200, 200);
        progress.Finish();
        Assert.Equal("    (0.00/100%)\r    (1.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n", writer.ToString());
    }

    [Theory]
    [InlineData("size=1M", "size=1M")]
    [InlineData("cluster_size=4k,table_size=2", "cluster_size=4k table_size=2")]
    [InlineData("backing_file=a,,b,backing_fmt=raw", "backing_file=a,b backing_fmt=raw")]
    [InlineData("size=1M,,x", "size=1M,x")]
    [InlineData("help", "help=on")]
    [InlineData("a=", "a=")]
    public void Option_lists_split_like_qemu(string text, string expected)
    {
        var list = ImageOptionList.Parse([text]);
        Assert.Equal(expected, string.Join(" ", list.Entries.Select(e => $"{e.Key}={e.Value}")));
    }

    [Theory]
    [InlineData("size=1M,")]
    [InlineData(",size=1M")]
    [InlineData("=1")]
    [InlineData("")]
    public void Empty_list_elements_are_refused(string text)
    {
        var e = Assert.ThrowsAny<Exception>(() => ImageOptionList.Parse([text]));
        Assert.Equal($"Invalid option list: {text}", e.Message);
    }
}
