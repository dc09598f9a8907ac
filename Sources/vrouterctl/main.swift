VRouterCtl.main(VRouterCtl.globalOptionsLast(Array(CommandLine.arguments.dropFirst())))
