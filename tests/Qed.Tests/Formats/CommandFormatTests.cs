using Qed.Formats;
using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>The commands take their formats from the registry: formats we only recognise are refused by name in one line, by every command that opens an image.</summary>
public class CommandFormatTests
{
    public static TheoryData<string> ForeignFormats()
    {
        var data = new TheoryData<string>();
        foreach (var format in ImageFormats.All.Where(f => !f.CanOpen))
        {
            data.Add(format.Name);
        }
        return data;
    }

    private static byte[] FileOf(string format) => format switch
    {
        "qcow2" => [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 3],
        "qcow" => [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 1],
        "vmdk" => "KDMV"u8.ToArray(),
        "vdi" => [.. new byte[64], 0x7f, 0x10, 0xda, 0xbe],
        "vhdx" => "vhdxfile"u8.ToArray(),
        "vpc" => "conectix"u8.ToArray(),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    [Theory]
    [MemberData(nameof(ForeignFormats))]
    public void EveryCommand_RefusesAFormatItOnlyRecognises_InOneLine(string format)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk");
        File.WriteAllBytes(path, [.. FileOf(format), .. new byte[65536]]);
        string before = Tools.Sha256OfFile(path);
        string reason = $"'{path}' is a {format} image, which this library does not read (it reads QED, qcow2 and raw images)";
        var commands = new (string[] Args, string Line)[]
        {
            (["info", path], $"qed: Could not open '{path}': {reason}"),
            (["check", path], $"qed: Could not open '{path}': {reason}"),
            (["bench", "-c", "1", path], $"qed: Could not open '{path}': {reason}"),
            (["convert", "-O", "raw", path, dir.File("out")], $"qed: Could not open '{path}': {reason}"),
            (["io", "-c", "read 0 512", path], $"qed: can't open device {path}: {reason}"),
            (["info", "-f", format, path], $"qed: Could not open '{path}': Unknown driver '{format}': this library reads QED, qcow2 and raw images"),
            (["create", "-f", format, dir.File("new"), "1M"], $"qed: {dir.File("new")}: Unknown file format '{format}'"),
        };
        foreach (var (args, line) in commands)
        {
            var result = QedCli.Run(args);
            Assert.Equal(1, result.ExitCode);
            Assert.Equal(line, Assert.Single(QedCli.Lines(result.StdErr)));
        }
        Assert.Equal(7, commands.Length);
        Assert.Equal(before, Tools.Sha256OfFile(path));
        Assert.False(File.Exists(dir.File("out")));
        Assert.False(File.Exists(dir.File("new")));
    }
}
